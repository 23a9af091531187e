"""`type: webhook` guardrails: ask a team's own HTTP detector, act on its findings like a built-in guardrail.

The modules, in the order a request meets them:

- `config`: the policy object of one webhook guardrail (URL, credential, timeouts, on_error, …);
- `wire`: the versioned JSON contract (`cgt.guardrail.v1`) the gateway POSTs and the answer it accepts;
- `client`: the bounded connection pool, timeouts and a circuit breaker per webhook; metrics per call;
- `verdict`: findings and replacements by span over a list of `(path, text)` pairs (the small interface
  the input and output sides share);
- `input_stage`: the callout stage, run concurrently with the built-in input guardrails;
- `output_guard`: whole completions once, streams through a hold-back window at a bounded cadence;
- `install`: plugs both into the app.

The texts are addressed by the exchange walker's paths (`messages[3].content`,
`messages[1].content[0].text`, `choices[0].message.content`); `adapters` turns today's message and
choice texts into such pairs.
"""
