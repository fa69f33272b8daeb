#!/bin/sh
# trunk.toml's post_build hook: adds the model origin the page is built for, M2UGEN_MODEL_ORIGIN
# (one origin: https://host[:port], or http:// on this machine), to the built page's CSP
# connect-src. Unset, the page fetches from its own origin only.
set -eu
origin="${M2UGEN_MODEL_ORIGIN:-}"
[ -z "$origin" ] && exit 0
if ! printf '%s' "$origin" | grep -Eq '^(https://[A-Za-z0-9.-]+|http://(127\.0\.0\.1|localhost))(:[0-9]{1,5})?$'; then
  echo "M2UGEN_MODEL_ORIGIN=$origin: give one origin, https://host[:port] (or http://127.0.0.1:port), without a path" >&2
  exit 2
fi
page="$TRUNK_STAGING_DIR/index.html"
grep -q "connect-src 'self';" "$page" || { echo "$page: no \"connect-src 'self';\" to add $origin to" >&2; exit 2; }
sed -i "s#connect-src 'self';#connect-src 'self' $origin;#" "$page"
echo "the page may fetch models from $origin (connect-src)"
