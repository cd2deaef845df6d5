"""The billing catalog: tenant settings, burn tables and provider prices, as every process sees them.

Postgres is the source of truth (migration 0003); every write is also published, as JSON, to
the compacted `billing.catalog` topic, and each API and worker process keeps the whole catalog
in memory (`Catalog`, on a `CompactedView`), so a new version is in force everywhere within a
second, without a restart, and rating never costs a database round trip.

Records and their keys (latest value per key survives compaction; versions are immutable, so
each version has a key of its own):

    tenant:{customer_id}                                          TenantSettings
    burn_table:{customer_id}:{burn_table_id}:{version}            BurnTableRecord
    price:{provider}:{model}:{version}                            PriceRecord (dataset snapshot)
    price_override:{customer_id}:{provider}:{model}:{version}     PriceRecord (a tenant's override)
    plan:{customer_id}:{plan_id}                                  PlanRecord (plans are not edited)
    subscription:{customer_id}:{subscription_id}                  SubscriptionRecord (its status changes)

Values are JSON objects with a `kind`; amounts are decimal strings, times RFC 3339.

Lookups (`rate_event` puts them together, for every process that rates):
- a tenant with several burn tables is rated with the NEWEST-CREATED table that has a version
  in force at the event's time (creating a table switches the tenant to it from its
  `effective_from`; older tables still rate the time before);
- before the tenant's first version, that first version: a table created now rates the events
  reported late, up to the accepted window (35 days), instead of parking them as `no_rate`;
- a tenant with no burn table at all is rated by the default one derived from the provider
  price (openmonetize/billing/default_burn_table.py), so a new tenant's first event is charged;
- a price is the tenant's override in force at that time, else the dataset snapshot's; before
  a group's first version, that first version (`prices.in_force`).

A tenant is known (`knows`) once its settings are published: creating a tenant publishes them
(`openmonetize admin customers create`; `catalog sync` publishes every tenant's).

Feature gating (the entitlement check) answers from here too: a tenant's `disabled_features`
and, for a user or team with active subscriptions, the features their plans include.

One module per job: `records` (what is published), `json_codec` (records as the topic carries
them, and their keys), `publisher` (writing them, acknowledged), `index` (the lookups, pure) and
`view` (the index kept current from the topic).
"""
