"""What the app and the round process it starts agree on for sampling evaluation answers with the
serving engine: the route, the environment that tells the round where it is and the secret to send
(serving.eval_sampling serves it, align.served_eval calls it)."""

ROUTE = "/api/align/eval-samples"
EVAL_URL_ENV = "CHAT_EVAL_SAMPLES_URL"  # set by loop.rounds for the round it starts
EVAL_TOKEN_ENV = "CHAT_EVAL_SAMPLES_TOKEN"  # the secret, sent back in TOKEN_HEADER
TOKEN_HEADER = "X-Round-Token"
