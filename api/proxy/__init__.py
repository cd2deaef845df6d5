"""The AI proxy: OpenAI, Anthropic and Gemini calls forwarded unchanged to the provider, each
billed to the user its `X-OM-*` headers name, with an entitlement check before the call.

Its own process (`openmonetize proxy`), reusing the API's parts in-process: the API-key cache
(api/auth.py), the ingest step (api/intake.py: one usage event per call, source `proxy`), the
billing catalog and wallet balances views, and the entitlement decision (api/entitlement_decisions.py).
"""
