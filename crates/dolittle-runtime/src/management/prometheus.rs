//! Per processor and tenant gauges in the Prometheus text format, appended to `/metrics`:
//! position, log tail, lag, failing partitions and failed attempts of every registered
//! processor. They are read from the processors' live states and the logs' watched lengths,
//! so rendering touches no store.

use std::fmt::Write as _;

use crate::RuntimeContext;

struct Sample {
    labels: String,
    position: u64,
    log_tail: u64,
    failing_partitions: usize,
    failed_attempts: u64,
    halted: bool,
}

/// A gauge family: name, help and how a sample's value is read.
type Family = (&'static str, &'static str, fn(&Sample) -> String);

/// The gauges of every registered processor in every tenant.
pub fn render(context: &RuntimeContext) -> String {
    let mut samples = Vec::new();
    for (key, processor) in context.processors.registered() {
        for (tenant, state) in &processor.states {
            let Ok(store) = context.tenants.store(*tenant) else {
                continue;
            };
            let state = state.borrow().clone();
            let log_tail = *store.watch_log(key.scope).borrow();
            let failed_attempts = state
                .failing_partitions
                .values()
                .map(|partition| u64::from(partition.attempts))
                .sum::<u64>()
                + state
                    .failure
                    .as_ref()
                    .map_or(0, |failure| u64::from(failure.attempts));
            samples.push(Sample {
                labels: format!(
                    "kind=\"{}\",processor=\"{}\",scope=\"{}\",tenant=\"{tenant}\"",
                    key.kind.as_str(),
                    key.processor,
                    key.scope
                ),
                position: state.position,
                log_tail,
                failing_partitions: state.failing_partitions.len(),
                failed_attempts,
                halted: state.failure.is_some(),
            });
        }
    }
    let mut text = String::new();
    let families: [Family; 5] = [
        (
            "dolittle_processor_position",
            "The next event-log sequence number a processor will process.",
            |sample| sample.position.to_string(),
        ),
        (
            "dolittle_processor_lag_events",
            "Events between a processor's position and the end of its scope's log.",
            |sample| sample.log_tail.saturating_sub(sample.position).to_string(),
        ),
        (
            "dolittle_processor_failing_partitions",
            "Partitions a partitioned processor has parked after a failure.",
            |sample| sample.failing_partitions.to_string(),
        ),
        (
            "dolittle_processor_halted",
            "1 when an unpartitioned processor is halted by a failure.",
            |sample| u8::from(sample.halted).to_string(),
        ),
        (
            "dolittle_processor_failed_attempts",
            "Failed attempts of the events a processor is now retrying.",
            |sample| sample.failed_attempts.to_string(),
        ),
    ];
    for (name, help, value) in families {
        let _ = writeln!(text, "# HELP {name} {help}");
        let _ = writeln!(text, "# TYPE {name} gauge");
        for sample in &samples {
            let _ = writeln!(text, "{name}{{{}}} {}", sample.labels, value(sample));
        }
    }
    text
}
