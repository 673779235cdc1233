# The description the OpenAPI document openapi.json is generated from:
#     python3 openapi.py > openapi.json
# Keep the two in step with the routes in mod.rs (tests/management.rs checks the paths).
import json
def ref(n): return {"$ref": f"#/components/schemas/{n}"}
def arr(s): return {"type":"array","items":s}
S=lambda **k: {"type":"string", **k}
I={"type":"integer","format":"int64","minimum":0}
B={"type":"boolean"}
def obj(props, required=None):
    o={"type":"object","properties":props}
    if required: o["required"]=required
    return o
tenant_p={"name":"tenant","in":"path","required":True,"schema":S(format="uuid"),"description":"The tenant"}
def q(name, desc, schema=None): return {"name":name,"in":"query","required":False,"schema":schema or S(),"description":desc}
scope_q=q("scope","The scope (default: the default scope, the empty GUID)",S(format="uuid"))
tenant_q=q("tenant","Only this tenant",S(format="uuid"))
from_q=q("from","The first sequence number or stream position (default 0)",I)
limit_q=q("limit","The most items in one page (default 100, at most 1000)",I)
errors={"400":{"$ref":"#/components/responses/Invalid"},"401":{"$ref":"#/components/responses/Unauthorized"},"404":{"$ref":"#/components/responses/NotFound"},"500":{"$ref":"#/components/responses/Failed"},"503":{"$ref":"#/components/responses/Failed"}}
def op(summary, schema, params=(), body=None, extra=None, tag="read"):
    o={"summary":summary,"tags":[tag],"parameters":list(params),"responses":{"200":{"description":"OK","content":{"application/json":{"schema":schema}}},**errors}}
    if body: o["requestBody"]={"required":False,"content":{"application/json":{"schema":body}}}
    if extra: o["responses"].update(extra)
    return o
id_p=lambda what: {"name":"id","in":"path","required":True,"schema":S(format="uuid"),"description":f"The {what}'s id"}
paths={
 "/api/runtime":{"get":op("The Runtime: version, uptime, tenants, connected heads' reverse calls",ref("Runtime"),tag="runtime")},
 "/api/tenants":{"get":op("Every tenant and its store (backend and location, never a secret)",arr(ref("Tenant")),tag="runtime")},
 "/api/processors":{"get":op("Every event handler, filter and projection",arr(ref("Processor")),[q("kind","event-handler, filter or projection"),tenant_q,scope_q],tag="processors")},
 "/api/event-handlers":{"get":op("Every event handler with its state per tenant",arr(ref("Processor")),[tenant_q,scope_q],tag="processors")},
 "/api/event-handlers/{id}":{"get":op("One event handler",ref("Processor"),[id_p("event handler"),tenant_q,scope_q],tag="processors")},
 "/api/event-handlers/{id}/replay":{"post":op("Replay an event handler: every tenant from the start, one tenant from a position, or one partition. A position past the current one is refused (409)",ref("ReplayResponse"),[id_p("event handler")],body=ref("ReplayRequest"),extra={"409":{"$ref":"#/components/responses/Refused"}},tag="processors")},
 "/api/filters":{"get":op("Every filter with its state per tenant",arr(ref("Processor")),[tenant_q,scope_q],tag="processors")},
 "/api/filters/{id}":{"get":op("One filter",ref("Processor"),[id_p("filter"),tenant_q,scope_q],tag="processors")},
 "/api/projections":{"get":op("Every projection with its state per tenant",arr(ref("Processor")),[tenant_q,scope_q],tag="processors")},
 "/api/projections/{id}":{"get":op("One projection",ref("Processor"),[id_p("projection"),tenant_q,scope_q],tag="processors")},
 "/api/projections/{id}/replay":{"post":op("Rebuild a projection from the start of the log. A registered projection rebuilds beside its live read models, which readers keep getting until the rebuild has caught up and replaces them in one step (the tenant entries say rebuilding meanwhile). A projection no head has registered now has its read models, definition and state dropped, and the next registration builds it. from and partition do not apply (400)",ref("ReplayResponse"),[id_p("projection")],body=ref("ReplayRequest"),extra={"409":{"$ref":"#/components/responses/Refused"}},tag="processors")},
 "/api/tenants/{tenant}/events":{"get":op("A page of a scope's event log",ref("EventPage"),[tenant_p,scope_q,from_q,limit_q,q("event_type","Only events of this event type id",S(format="uuid")),q("event_source","Only events of this event source"),q("public","Only public events",B)])},
 "/api/tenants/{tenant}/event-types":{"get":op("The event types that occur in a scope's log, with counts",ref("EventTypes"),[tenant_p,scope_q])},
 "/api/tenants/{tenant}/streams/{stream}":{"get":op("A page of a stream",ref("StreamPage"),[tenant_p,{"name":"stream","in":"path","required":True,"schema":S(format="uuid")},scope_q,from_q,limit_q,q("partition","Only this partition")])},
 "/api/tenants/{tenant}/aggregates":{"get":op("Aggregate roots with their instances and versions",arr(ref("AggregateRoot")),[tenant_p,q("aggregate_root","Only this aggregate root",S(format="uuid"))])},
 "/api/tenants/{tenant}/aggregates/{aggregate_root}/{event_source}":{"get":op("The events of one aggregate root instance",ref("AggregateEvents"),[tenant_p,{"name":"aggregate_root","in":"path","required":True,"schema":S(format="uuid")},{"name":"event_source","in":"path","required":True,"schema":S(),"description":"Percent-encoded"}])},
 "/api/tenants/{tenant}/projections/{projection}/read-models":{"get":op("The read models of a projection: one key, or all",arr(ref("ReadModel")),[tenant_p,{"name":"projection","in":"path","required":True,"schema":S(format="uuid")},scope_q,q("key","Only this key (404 when there is none)")])},
 "/api/tenants/{tenant}/subscriptions":{"get":op("The tenant's event-horizon subscriptions and their states",arr(ref("Subscription")),[tenant_p],tag="event-horizon")},
 "/api/event-horizon/consents":{"get":op("The consents this Runtime's tenants give to consumers (event-horizon-consents.json)",arr(ref("Consent")),tag="event-horizon")},
}
ts=S(format="date-time")
failure=obj({"reason":S(),"attempts":I,"retry_time":{**ts,"nullable":True},"last_failed":ts})
event=obj({"sequence_number":I,"occurred":ts,"event_source":S(),"event_type":S(format="uuid"),"event_type_generation":I,"public":B,"content":{"description":"The event's content as JSON (a string when it is not JSON)"},"correlation":S(format="uuid"),"aggregate_root":{**S(format="uuid"),"nullable":True},"aggregate_root_version":{**I,"nullable":True},"external_sequence_number":{**I,"nullable":True},"consent":{**S(format="uuid"),"nullable":True}})
schemas={
 "Failure":obj({"failure":obj({"id":S(format="uuid",description="The Dolittle failure id, as on the gRPC side"),"reason":S()},["id","reason"])},["failure"]),
 "Runtime":obj({"version":S(),"microservice":S(format="uuid"),"uptime_seconds":{"type":"number"},"tenants":I,"open_reverse_calls":I,"registered_processors":I}),
 "Tenant":obj({"id":S(format="uuid"),"store":obj({"backend":S(),"location":S()})}),
 "ProcessingFailure":failure,
 "FailingPartition":obj({"partition":S(),"position":I,"reason":S(),"attempts":I,"retry_time":{**ts,"nullable":True},"last_failed":ts}),
 "TenantProcessor":obj({"tenant":S(format="uuid"),"state":S(enum=["running","idle","failing"]),"position":I,"log_tail":I,"lag":I,"rebuilding":B,"last_successfully_processed":{**ts,"nullable":True},"failure":{"allOf":[ref("ProcessingFailure")],"nullable":True},"failing_partitions":arr(ref("FailingPartition"))}),
 "Processor":obj({"kind":S(enum=["event-handler","filter","projection"]),"id":S(format="uuid"),"scope":S(format="uuid"),"partitioned":B,"event_types":arr(S(format="uuid")),"registered":B,"tenants":arr(ref("TenantProcessor"))}),
 "ReplayRequest":obj({"tenant":S(format="uuid",description="Only this tenant (default every tenant)"),"from":{**I,"description":"The position to replay from (default 0)"},"partition":S(description="Only this partition"),"scope":S(format="uuid")}),
 "ReplayResponse":obj({"replayed":ref("Processor")}),
 "Event":event,
 "EventPage":obj({"events":arr(ref("Event")),"next":I,"tail":I}),
 "EventTypes":obj({"event_types":arr(obj({"id":S(format="uuid"),"generations":arr(I),"events":I,"first_sequence_number":I,"last_sequence_number":I,"last_occurred":ts})),"scanned":I,"complete":B}),
 "StreamPage":obj({"events":arr(obj({"position":I,"partition":S(),"event":ref("Event")})),"next":I,"tail":I}),
 "AggregateRoot":obj({"aggregate_root":S(format="uuid"),"instances":arr(obj({"event_source":S(),"version":I}))}),
 "AggregateEvents":obj({"aggregate_root":S(format="uuid"),"event_source":S(),"version":I,"events":arr(ref("Event"))}),
 "ReadModel":obj({"key":S(),"state":{"description":"The read model as JSON"}}),
 "Subscription":obj({"producer_microservice":S(format="uuid"),"producer_tenant":S(format="uuid"),"stream":S(format="uuid"),"partition":S(),"scope":S(format="uuid"),"position":I,"last_successfully_processed":{**ts,"nullable":True},"failure":{"allOf":[ref("ProcessingFailure")],"nullable":True}}),
 "Consent":obj({"producer_tenant":S(format="uuid"),"consumer_microservice":S(format="uuid"),"consumer_tenant":S(format="uuid"),"stream":S(format="uuid"),"partition":S(),"consent":S(format="uuid")}),
}
resp=lambda d: {"description":d,"content":{"application/json":{"schema":ref("Failure")}}}
doc={"openapi":"3.0.3","info":{"title":"Dolittle Runtime management API","version":"{{VERSION}}","description":"Operating a Dolittle Runtime: tenants, processors (positions, lag, failing partitions, replay), the event log, aggregates, read models and the event horizon. Errors carry the failure ids of the gRPC side. When the Runtime has a management token, every /api request needs `Authorization: Bearer <token>`; without it the answer is 401 and nothing else."},
 "servers":[{"url":"http://localhost:51052"}],
 "security":[{"bearer":[]},{}],
 "paths":paths,
 "components":{"schemas":schemas,"securitySchemes":{"bearer":{"type":"http","scheme":"bearer"}},
  "responses":{"Invalid":resp("A request that cannot be read"),"NotFound":resp("No such tenant, processor, aggregate or read model"),"Refused":resp("Refused in the processor's current state"),"Failed":resp("The event store failed or the operation is not available"),"Unauthorized":{"description":"A missing or wrong bearer token: no body"}}}}
print(json.dumps(doc, indent=2))
