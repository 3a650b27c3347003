# The active-learning backend and its rq worker (same image, different command; see docker-compose.yml).
#   docker build -t al-backend:cpu .                           # CPU-only PyTorch (default, smaller)
#   docker build -t al-backend:cuda --build-arg VARIANT=cuda .  # PyTorch with CUDA (needs the NVIDIA runtime)
ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim

ARG VARIANT=cpu
# Where the CPU-only PyTorch wheels come from; the CUDA variant takes the default index.
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# PyTorch first, in its own layer: it is by far the largest and changes least often.
RUN case "$VARIANT" in \
      cpu) pip install "torch>=2.1" --index-url "$TORCH_CPU_INDEX" ;; \
      cuda) pip install "torch>=2.1" ;; \
      *) echo "VARIANT must be cpu or cuda, not '$VARIANT'" >&2; exit 1 ;; \
    esac

COPY pyproject.toml README.md ./
COPY al_core ./al_core
COPY ml_backend ./ml_backend
COPY plasm_export ./plasm_export
COPY simulate ./simulate
COPY testkit ./testkit
RUN pip install .

RUN useradd --create-home --uid 1000 app && mkdir -p /data && chown app /data
USER app
ENV MODEL_DIR=/data/models \
    HF_HOME=/data/hf-cache
VOLUME ["/data"]
EXPOSE 9090

# The worker service overrides this with `rq worker ...`.
CMD ["ml-backend", "--host", "0.0.0.0", "--port", "9090"]
