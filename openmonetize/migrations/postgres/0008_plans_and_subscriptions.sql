-- Plans and subscriptions (openmonetize/plans/, api/routes/plans.py) and feature gating.
--
-- plans: per tenant, N credits granted per period to each subscribed user or team, with a
-- rollover policy carried out by the grants' expiry (openmonetize/plans/periods.py), and the
-- features the plan includes (NULL: every feature) or excludes. Plans are not edited.
--
-- subscriptions: a user's or a team's subscription to a plan. Its periods are anchored on
-- `starts_at`; `periods_granted` counts the periods the scheduler has dealt with (granted or
-- skipped), so the next period is number `periods_granted`. Cancelling stops future grants.
--
-- plan_grants: one row per (subscription, period) the scheduler dealt with, written in the
-- same transaction that advances `periods_granted`, after Kafka acknowledged the grant
-- commands. The command ids derive from (tenant, subscription, period start), so a grant
-- re-sent after a crash is the same command, which the wallet agent applies once.
--
-- tenant_settings gains the tenant's declared features (NULL: not declared, any feature id
-- is accepted) and the features it switched off.

CREATE TABLE plans (
    plan_id           text PRIMARY KEY,
    customer_id       text NOT NULL REFERENCES customers (customer_id),
    name              text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    credits           numeric(38, 12) NOT NULL CHECK (credits > 0),
    period            text NOT NULL CHECK (period IN ('day', 'week', 'month', 'year')),
    period_count      integer NOT NULL CHECK (period_count BETWEEN 1 AND 366),
    rollover          text NOT NULL CHECK (rollover IN ('none', 'full', 'capped')),
    rollover_cap      numeric(38, 12) CHECK (rollover_cap > 0),
    features          text[],
    excluded_features text[] NOT NULL DEFAULT '{}',
    priority          integer NOT NULL DEFAULT 0 CHECK (priority >= 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    CHECK ((rollover = 'capped') = (rollover_cap IS NOT NULL))
);

CREATE INDEX plans_customer ON plans (customer_id, created_at);

CREATE TABLE subscriptions (
    subscription_id text PRIMARY KEY,
    customer_id     text NOT NULL REFERENCES customers (customer_id),
    plan_id         text NOT NULL REFERENCES plans (plan_id),
    user_id         text,
    team_id         text,
    wallet_id       text NOT NULL,
    starts_at       timestamptz NOT NULL,
    periods_granted integer NOT NULL DEFAULT 0 CHECK (periods_granted >= 0),
    next_period_at  timestamptz NOT NULL,  -- the start of period number periods_granted: when it is due
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'cancelled')),
    cancelled_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (user_id IS NULL OR team_id IS NULL),
    CHECK ((status = 'cancelled') = (cancelled_at IS NOT NULL))
);

CREATE INDEX subscriptions_customer ON subscriptions (customer_id, created_at);
CREATE INDEX subscriptions_due ON subscriptions (next_period_at) WHERE status = 'active';
-- One active subscription to a plan per wallet.
CREATE UNIQUE INDEX subscriptions_active_once ON subscriptions (customer_id, plan_id, wallet_id) WHERE status = 'active';

CREATE TABLE plan_grants (
    subscription_id text NOT NULL REFERENCES subscriptions (subscription_id),
    period          integer NOT NULL CHECK (period >= 0),
    customer_id     text NOT NULL,
    wallet_id       text NOT NULL,
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    command_ids     text[] NOT NULL,  -- empty: skipped (its credits would have expired already)
    amount          numeric(38, 12) NOT NULL CHECK (amount >= 0),
    granted_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscription_id, period)
);

ALTER TABLE tenant_settings ADD COLUMN features text[];
ALTER TABLE tenant_settings ADD COLUMN disabled_features text[] NOT NULL DEFAULT '{}';
