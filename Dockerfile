# One image for every process: the coordinator and the signer nodes.
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends softhsm2 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY custody custody
COPY signer_nodes signer_nodes
COPY policy policy
COPY hsm hsm
COPY proofs proofs
COPY bench bench
RUN pip install --no-cache-dir .
# The data dir (from `custody init`, with addresses edited to the compose
# service names) is mounted at /data.
ENTRYPOINT ["python", "-m"]
