# The kaizen-stream worker image used by docker-compose.yml.
#
# Built in two stages so that the C speed-ups (hatch_build.py) are compiled with gcc in the
# first and the runtime image carries no compiler: the wheels of the project and of its
# dependencies are built there and only installed here.
FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc libc6-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md hatch_build.py ./
COPY workers ./workers
COPY schemas ./schemas
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels kaizen-stream \
    && rm -rf /wheels
ENV KAIZEN_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 6066
ENTRYPOINT ["kaizen-stream"]
CMD ["worker"]
