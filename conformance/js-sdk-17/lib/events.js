// Event types, aggregate roots and small helpers shared by the scenarios. Plain JavaScript: the
// SDK's decorators are ordinary functions, so where a class needs one (aggregate roots) it is
// applied by hand instead of with TypeScript's `@` syntax.
'use strict';

const { randomUUID } = require('node:crypto');
const assert = require('node:assert/strict');

const { AggregateRoot, aggregateRoot, on } = require('@dolittle/sdk.aggregates');

const EVENT_TYPE_IDS = {
    orderPlaced: 'c3a5b2e0-6f1d-4f5e-a1d2-93b7e5f0a4c2',
    orderShipped: 'd4b6c3f1-7a2e-4a6f-b2e3-a4c8f6a1b5d3',
    // Committed by scenarios as a barrier or as noise; no handler handles it.
    somethingElse: 'e5c7d4a2-8b3f-4b7a-83f4-b5d9a7b2c6e4',
};

class OrderPlaced {
    constructor(orderNumber, amount) {
        this.orderNumber = orderNumber;
        this.amount = amount;
    }
}

class OrderShipped {
    constructor(orderNumber, carrier) {
        this.orderNumber = orderNumber;
        this.carrier = carrier;
    }
}

class SomethingElse {
    constructor(note) {
        this.note = note;
    }
}

/** A ClientBuilder configuration step that associates the event classes above with their ids. */
function withEventTypes(builder) {
    return builder.withEventTypes(types => {
        types.associate(OrderPlaced, EVENT_TYPE_IDS.orderPlaced, 1);
        types.associate(OrderShipped, EVENT_TYPE_IDS.orderShipped, 2);
        types.associate(SomethingElse, EVENT_TYPE_IDS.somethingElse, 1);
    });
}

const SHOPPING_CART_AGGREGATE_ROOT_ID = '0d8f7c6b-5a49-4c3b-9e2d-1f0a9b8c7d6e';

/** The usage reference's ShoppingCart, written without decorator syntax. */
class ShoppingCart extends AggregateRoot {
    constructor(eventSourceId) {
        super(eventSourceId);
        this.orderNumbers = [];
        this.versionsSeenDuringReplay = [];
    }

    place(orderNumber, amount) {
        if (this.orderNumbers.length > 9) throw new Error('the cart is full');
        this.apply(new OrderPlaced(orderNumber, amount));
    }

    onPlaced(event) {
        this.orderNumbers.push(event.orderNumber);
        this.versionsSeenDuringReplay.push(this.version.value);
    }
}
aggregateRoot(SHOPPING_CART_AGGREGATE_ROOT_ID)(ShoppingCart);
on(OrderPlaced)(ShoppingCart.prototype, 'onPlaced', Object.getOwnPropertyDescriptor(ShoppingCart.prototype, 'onPlaced'));

/** JSON content that a re-serialising store would be likely to change. */
function awkwardContent(marker) {
    return {
        marker,
        text: 'æøå ✓ "quoted" \\ back\\slash \u0000 nul, tab\t, newline\n, emoji 🎉',
        numbers: { integer: 42, negative: -17, zero: 0, largestSafe: 9007199254740991, fraction: 2.5, tiny: 1e-7, exponent: 6.02e23 },
        booleans: [true, false],
        nothing: null,
        emptyObject: {},
        emptyArray: [],
        nested: { deeper: { deepest: ['a', 1, { b: null }] } },
        'key with spaces': 'value',
        'ключ': 'значение',
        $dollar: 'a key that BSON stores specially',
        'dotted.key': 'a key that BSON stores specially',
    };
}

function newId() {
    return randomUUID();
}

function idText(concept) {
    return concept.value.toString();
}

function assertSucceeded(result, what) {
    assert.ok(result, `${what}: the SDK returned nothing`);
    if (result.failed) {
        assert.fail(`${what}: the runtime returned failure ${idText(result.failure.id)}: ${result.failure.reason.value}`);
    }
}

/** Asserts that a timestamp (a luxon DateTime) lies within [before, after] milliseconds. */
function assertOccurredWithin(occurred, before, after, what) {
    const millis = occurred.toMillis();
    // The wire carries a protobuf Timestamp; the SDK truncates it to whole milliseconds.
    assert.ok(millis >= before - 1 && millis <= after + 1,
        `${what}: occurred ${occurred.toISO()} is not within the commit's time window ` +
        `${new Date(before).toISOString()} .. ${new Date(after).toISOString()}`);
}

module.exports = {
    EVENT_TYPE_IDS,
    OrderPlaced,
    OrderShipped,
    SomethingElse,
    SHOPPING_CART_AGGREGATE_ROOT_ID,
    ShoppingCart,
    assertOccurredWithin,
    assertSucceeded,
    awkwardContent,
    idText,
    newId,
    withEventTypes,
};
