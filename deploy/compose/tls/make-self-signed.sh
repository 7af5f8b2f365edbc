#!/bin/sh
# A self-signed certificate for trying the stack; use your CA-issued certificate in production
# (the Huawei platform must trust it).
set -eu
cd "$(dirname "$0")"
host="${1:-callstream.example.com}"
openssl req -x509 -newkey rsa:2048 -nodes -days 365 -subj "/CN=${host}" \
  -addext "subjectAltName=DNS:${host},DNS:localhost" -keyout tls.key -out tls.crt
chmod 0644 tls.crt tls.key
echo "wrote $(pwd)/tls.crt and tls.key for ${host}"
