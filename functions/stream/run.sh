#!/bin/bash
# Started by the AWS Lambda Web Adapter (AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap):
# serve the stream app on $PORT; the adapter forwards function URL requests to it.
PATH=$PATH:$LAMBDA_TASK_ROOT/bin PYTHONPATH=$PYTHONPATH:/opt/python:$LAMBDA_RUNTIME_DIR \
  exec python -m uvicorn --port="$PORT" --no-access-log "$STREAM_ASGI_APP"
