#!/usr/bin/env bash
# Creates or renews the webhook's serving certificate with openssl and kubectl.
#
# A CA is created once and kept (in the Secret <secret>-ca, or in --dir with --files-only)
# unless --rotate-ca is given. The serving certificate is issued by that CA for the
# Service's DNS names and reissued only when it is missing, signed by another CA, missing
# a name, or expiring within --renew-days. The script then stores it in the TLS Secret and
# writes the CA into the caBundle of every webhook of the MutatingWebhookConfiguration.
# Running it twice in a row changes nothing the second time.
set -euo pipefail

usage() {
  cat <<'EOF'
Usage: certs.sh [options]

  -n, --namespace NS       namespace of the webhook (default image-patch-system)
  -s, --service NAME       Service name, for the DNS names (default image-patch-webhook)
      --secret NAME        TLS Secret (default image-patch-webhook-tls); the CA is
                           kept in NAME-ca
      --webhook-config NAME
                           MutatingWebhookConfiguration whose caBundle is written
                           (default image-patch-webhook)
      --dns NAME           extra DNS name in the certificate (repeatable)
      --ip ADDRESS         extra IP address in the certificate (repeatable), for
                           a webhook reached with clientConfig.url on 127.0.0.1
      --dir DIR            also write ca.crt, ca.key, tls.crt, tls.key and
                           ca-bundle.crt to DIR, and read them from DIR when the
                           cluster has none
      --files-only         use DIR only: no kubectl (requires --dir)
      --rotate-ca          create a new CA and a new serving certificate; the old
                           CA stays in the caBundle until the next rotation
      --days N             validity of the serving certificate (default 365)
      --renew-days N       reissue when it expires within N days (default 30)
      --context NAME       kubectl context
  -h, --help               show this help
EOF
}

namespace=image-patch-system
service=image-patch-webhook
secret=image-patch-webhook-tls
webhook_config=image-patch-webhook
extra_dns=()
extra_ips=()
dir=
files_only=false
rotate_ca=false
days=365
renew_days=30
ca_days=3650
kubectl_args=()

while [[ $# -gt 0 ]]; do
  case "$1" in
    -n|--namespace) namespace=$2; shift 2 ;;
    -s|--service) service=$2; shift 2 ;;
    --secret) secret=$2; shift 2 ;;
    --webhook-config) webhook_config=$2; shift 2 ;;
    --dns) extra_dns+=("$2"); shift 2 ;;
    --ip) extra_ips+=("$2"); shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    --files-only) files_only=true; shift ;;
    --rotate-ca) rotate_ca=true; shift ;;
    --days) days=$2; shift 2 ;;
    --renew-days) renew_days=$2; shift 2 ;;
    --context) kubectl_args+=(--context "$2"); shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "certs.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if $files_only && [[ -z $dir ]]; then
  echo "certs.sh: --files-only needs --dir" >&2
  exit 2
fi

say() { echo "certs.sh: $*"; }
kube() { kubectl "${kubectl_args[@]}" "$@"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077

dns_names=("$service" "$service.$namespace" "$service.$namespace.svc" "$service.$namespace.svc.cluster.local" "${extra_dns[@]}")

# Copies the Secret's key KEY, base64-decoded, to FILE. Fails when the Secret or key is absent.
secret_key_to_file() {
  local name=$1 key=$2 file=$3 value
  value=$(kube -n "$namespace" get secret "$name" -o "jsonpath={.data.${key//./\\.}}" 2>/dev/null) || return 1
  [[ -n $value ]] || return 1
  printf '%s' "$value" | base64 -d >"$file"
}

# Loads the current state into $work: from the cluster unless --files-only, else from --dir.
load_existing() {
  local file
  if ! $files_only; then
    secret_key_to_file "$secret-ca" ca.crt "$work/ca.crt" && secret_key_to_file "$secret-ca" ca.key "$work/ca.key" || rm -f "$work/ca.crt" "$work/ca.key"
    secret_key_to_file "$secret-ca" ca-previous.crt "$work/ca-previous.crt" || rm -f "$work/ca-previous.crt"
    secret_key_to_file "$secret" tls.crt "$work/tls.crt" && secret_key_to_file "$secret" tls.key "$work/tls.key" || rm -f "$work/tls.crt" "$work/tls.key"
  fi
  if [[ -n $dir && ! -f $work/ca.crt ]]; then
    for file in ca.crt ca.key ca-previous.crt tls.crt tls.key; do
      [[ -f $dir/$file ]] && cp "$dir/$file" "$work/$file"
    done
  fi
  if [[ ! -f $work/ca.crt || ! -f $work/ca.key ]]; then
    rm -f "$work/ca.crt" "$work/ca.key"
  fi
}

create_ca() {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/ca.key" -out "$work/ca.crt" -days "$ca_days" \
    -subj "/CN=image-patch-webhook-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}

# Succeeds when tls.crt is issued by the current CA, names every DNS name and IP address,
# matches tls.key, and does not expire within --renew-days.
serving_cert_is_current() {
  local name address
  [[ -f $work/tls.crt && -f $work/tls.key ]] || return 1
  openssl verify -CAfile "$work/ca.crt" "$work/tls.crt" >/dev/null 2>&1 || return 1
  openssl x509 -in "$work/tls.crt" -noout -checkend $((renew_days * 86400)) >/dev/null || return 1
  for name in "${dns_names[@]}"; do
    openssl x509 -in "$work/tls.crt" -noout -checkhost "$name" | grep -q 'does match' || return 1
  done
  for address in "${extra_ips[@]}"; do
    openssl x509 -in "$work/tls.crt" -noout -checkip "$address" | grep -q 'does match' || return 1
  done
  [[ $(openssl x509 -in "$work/tls.crt" -noout -pubkey) == $(openssl pkey -in "$work/tls.key" -pubout) ]]
}

issue_serving_cert() {
  local san="" name address
  for name in "${dns_names[@]}"; do san+="DNS:$name,"; done
  for address in "${extra_ips[@]}"; do san+="IP:$address,"; done
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/tls.key" -out "$work/tls.csr" -subj "/CN=$service.$namespace.svc" 2>/dev/null
  printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
    "${san%,}" >"$work/tls.ext"
  openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
    -days "$days" -sha256 -extfile "$work/tls.ext" -out "$work/tls.crt" 2>/dev/null
}

load_existing

if $rotate_ca && [[ -f $work/ca.crt ]]; then
  mv "$work/ca.crt" "$work/ca-previous.crt"
  rm -f "$work/ca.key"
  create_ca
  say "CA rotated; the previous CA stays in the caBundle until the next rotation"
elif [[ -f $work/ca.crt ]]; then
  say "CA kept ($(openssl x509 -in "$work/ca.crt" -noout -enddate))"
else
  create_ca
  say "CA created"
fi

if serving_cert_is_current; then
  say "serving certificate kept ($(openssl x509 -in "$work/tls.crt" -noout -enddate))"
else
  issue_serving_cert
  say "serving certificate issued for ${dns_names[*]} ${extra_ips[*]}"
fi

cat "$work/ca.crt" >"$work/ca-bundle.crt"
[[ -f $work/ca-previous.crt ]] && cat "$work/ca-previous.crt" >>"$work/ca-bundle.crt"

if [[ -n $dir ]]; then
  mkdir -p "$dir"
  for file in ca.crt ca.key tls.crt tls.key ca-bundle.crt ca-previous.crt; do
    if [[ -f $work/$file ]] && ! cmp -s "$work/$file" "$dir/$file"; then
      # Write beside the target and rename, so that a reader never sees half a file.
      cp "$work/$file" "$dir/.$file.tmp" && mv "$dir/.$file.tmp" "$dir/$file"
      say "wrote $dir/$file"
    fi
  done
fi

if $files_only; then
  exit 0
fi

ca_files=(--from-file=ca.crt="$work/ca.crt" --from-file=ca.key="$work/ca.key")
[[ -f $work/ca-previous.crt ]] && ca_files+=(--from-file=ca-previous.crt="$work/ca-previous.crt")
kube -n "$namespace" create secret generic "$secret-ca" "${ca_files[@]}" --dry-run=client -o yaml \
  | kube apply -f - | sed 's/^/certs.sh: /'
kube -n "$namespace" create secret tls "$secret" --cert="$work/tls.crt" --key="$work/tls.key" --dry-run=client -o yaml \
  | kube apply -f - | sed 's/^/certs.sh: /'

if ! count=$(kube get mutatingwebhookconfiguration "$webhook_config" -o jsonpath='{range .webhooks[*]}x{end}' 2>/dev/null); then
  say "MutatingWebhookConfiguration $webhook_config not found; apply it and run this script again to set its caBundle"
  exit 0
fi
bundle=$(base64 -w0 <"$work/ca-bundle.crt")
current=$(kube get mutatingwebhookconfiguration "$webhook_config" -o jsonpath='{range .webhooks[*]}{.clientConfig.caBundle}{"\n"}{end}')
patch="["
stale=0
for ((i = 0; i < ${#count}; i++)); do
  patch+="{\"op\":\"add\",\"path\":\"/webhooks/$i/clientConfig/caBundle\",\"value\":\"$bundle\"},"
  [[ $(sed -n "$((i + 1))p" <<<"$current") == "$bundle" ]] || stale=$((stale + 1))
done
patch="${patch%,}]"
if [[ $stale -eq 0 ]]; then
  say "caBundle of mutatingwebhookconfiguration/$webhook_config unchanged (${#count} webhooks)"
else
  kube patch mutatingwebhookconfiguration "$webhook_config" --type=json -p "$patch" >/dev/null
  say "caBundle of mutatingwebhookconfiguration/$webhook_config written ($stale of ${#count} webhooks changed)"
fi
