# Settings of the Cloud TPU scripts (launch/tpu.sh sources this file). Edit the values here, or
# override any of them for one command through the environment:
#   ACCELERATOR_TYPE=v5litepod-16 ZONE=us-west4-a launch/tpu.sh --dry-run create
# or point LAUNCH_SETTINGS at a copy of this file. docs/cloud_tpu.md walks through a whole run.
# shellcheck shell=bash

# Google Cloud project and zone; the zone must offer the accelerator type (Cloud TPU "regions and
# zones" page; v4: us-central2-b, v5e: e.g. us-west4-a / us-east5-b / europe-west4-b).
: "${PROJECT:=my-gcp-project}"
: "${ZONE:=us-central2-b}"

# TPU VM (and queued-resource) name, and the slice: gcloud's accelerator names, e.g. v4-8, v4-16,
# v5litepod-8, v5litepod-16, v5p-8, v6e-8 (v4 / v5p count TensorCores, v5e / v6e count chips).
: "${TPU_NAME:=pointseg}"
: "${ACCELERATOR_TYPE:=v4-8}"
# TPU VM image; empty = the one docs/cloud_tpu.md lists for the accelerator family.
: "${RUNTIME_VERSION:=}"

# How the slice is obtained:
#   on-demand    tpu-vm create (fails at once when the zone has no capacity)
#   spot         tpu-vm create --spot (cheaper, can be preempted at any time)
#   queued       queued-resources create: waits in Cloud TPU's queue until the slice is free
#   queued-spot  queued-resources create --spot (the cheapest way to get a pod slice)
: "${PROVISIONING:=queued-spot}"
# Queued requests expire after this long in the queue (gcloud --valid-until-duration; empty = never).
: "${QUEUE_TIMEOUT:=24h}"

# Service account the TPU VM runs as (it reads the data and writes the workdir in BUCKET); empty =
# the project's default Compute Engine service account. `launch/tpu.sh init` grants it
# roles/storage.objectAdmin on the bucket (docs/cloud_tpu.md, "Once per project").
: "${SERVICE_ACCOUNT:=}"

# `launch/tpu.sh watch`: poll every POLL_SECONDS; after a preemption (or a run killed by a signal)
# wait WATCH_BACKOFF seconds, doubling up to WATCH_BACKOFF_MAX, then recreate / rerun; give up after
# WATCH_RETRIES such recoveries in one watch.
: "${POLL_SECONDS:=60}"
: "${WATCH_RETRIES:=8}"
: "${WATCH_BACKOFF:=60}"
: "${WATCH_BACKOFF_MAX:=1800}"

# Bucket in the TPU's region: datasets, init weights and every run's workdir live there (all
# workers of a pod slice must see one workdir, so it cannot be a local disk). setup mounts it with
# gcsfuse at /mnt/pointseg_bucket on every worker; the workdir is written through that mount.
: "${BUCKET:=gs://my-bucket}"

# The run: config (with variants), run name (workdir = $BUCKET/runs/$RUN_NAME), and Python on the
# TPU VM (the package needs >= 3.11; the ubuntu 22.04 TPU images ship 3.10, setup installs it).
: "${CONFIG:=configs/point.py:voc,tpu}"
: "${RUN_NAME:=point_voc}"
: "${PYTHON:=python3.11}"
# ImageNet-initialised FCN weights for the voc configs (written once by
# `python -m pointseg_jax.models.weights convert ... --out=<this path>`); set it to '' for configs
# that train from scratch (the synthetic ones).
: "${INIT_FROM:=${BUCKET}/weights/fcn32s_vgg16_imagenet.npz}"
