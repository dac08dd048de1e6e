# The tagger image: CLI, workers, beat and training. Dependencies are a layer of their own, installed
# from pyproject.toml alone, so a code change rebuilds only the last layers.
FROM python:3.11.10-slim-bookworm
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 TAGGER_VAR_DIR=/data
WORKDIR /app
# ExifTool reads the keywords embedded in stills for `tagger labels import --from-xmp` (docs/xmp.md).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libimage-exiftool-perl \
    && rm -rf /var/lib/apt/lists/*

COPY pyproject.toml /tmp/deps/pyproject.toml
RUN python -c "import tomllib; deps = tomllib.load(open('/tmp/deps/pyproject.toml', 'rb'))['project']['dependencies']; print('\n'.join(d for d in deps if not d.startswith('tagger-client')))" > /tmp/deps/requirements.txt \
    && pip install -r /tmp/deps/requirements.txt

COPY pyproject.toml README.md ./
COPY api_client api_client
COPY tagger tagger
COPY worker worker
COPY jobs jobs
COPY training training
# /data (TAGGER_VAR_DIR: checkpoints, plots, local state) belongs to the user the image runs as, so a
# named volume mounted there starts with that owner and training can write its checkpoints.
RUN pip install --no-deps ./api_client . \
    && useradd --create-home --uid 10001 tagger \
    && mkdir -p /data && chown tagger /data
USER tagger
VOLUME ["/data"]
ENTRYPOINT ["tagger"]
CMD ["--help"]
