#!/usr/bin/env bash
# Creates or renews the webhook's serving certificate with openssl and kubectl.
#
# A CA is created once and kept (in the Secret <secret>-ca, or in --dir with --files-only).
# It is replaced when --rotate-ca is given, when it expires within --renew-days, or when it
# would expire before a serving certificate that must be issued now. The serving
# certificate is issued by that CA for the Service's DNS names and reissued only when it is
# missing, signed by another CA, missing a name, or expiring within --renew-days. The
# script then stores it in the TLS Secret and writes the CA into the caBundle of every
# webhook of the MutatingWebhookConfiguration. Running it twice in a row changes nothing
# the second time.
#
# When kubectl fails to read the Secrets or the MutatingWebhookConfiguration for any reason
# but "not found" (a wrong context, an unreachable API server, a denied get), the script
# stops with kubectl's error before it writes a file or an object. It then checks with
# kubectl auth can-i every right that its writes need and stops, again before any write,
# when one is missing. A CA that openssl cannot read stops it too, unless --rotate-ca
# replaces that CA, which then never enters the caBundle.
#
# The writes go in an order that keeps the webhook working when one of them fails. The
# caBundle comes first, because it trusts the new CA and still the previous one. The CA
# Secret follows, then the TLS Secret that the webhook reloads, and the files in --dir last.
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
                           CA stays in the caBundle until the next rotation. The
                           CA is also rotated without this option when it expires
                           within --renew-days, or before a serving certificate
                           issued now for --days would. A stored CA that openssl
                           cannot read stops the script without this option.
                           With it, that CA is discarded and left out of the
                           caBundle
      --days N             validity of the serving certificate in days, 1 to 3650
                           (default 365)
      --renew-days N       reissue when it expires within N days, 0 to --days
                           minus 1 (default 30)
      --context NAME       kubectl context
  -h, --help               show this help

An option's value may also follow an equals sign: --days=90.

Without --files-only, the user needs the rights get, and create or patch, on both
Secrets in the namespace, and get and patch on the MutatingWebhookConfiguration when
it exists. The script checks them with kubectl auth can-i before it writes anything.
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

value_options=(-n --namespace -s --service --secret --webhook-config --dns --ip --dir --days --renew-days --context)
flag_options=(--files-only --rotate-ca -h --help)

# Prints a usage error and exits with status 2. Every check runs before the script
# creates a file or calls kubectl, so a rejected run changes nothing.
usage_error() {
  echo "certs.sh: $*" >&2
  exit 2
}

# Succeeds when $1 is one of the words that follow it.
is_one_of() {
  local word=$1 candidate
  shift
  for candidate in "$@"; do
    [[ $word == "$candidate" ]] && return 0
  done
  return 1
}

while [[ $# -gt 0 ]]; do
  option=$1
  inline_value=false
  if [[ $option == --*=* ]]; then
    # --option=value is split into two arguments.
    set -- "${option%%=*}" "${option#*=}" "${@:2}"
    option=$1
    inline_value=true
  fi
  if is_one_of "$option" "${value_options[@]}"; then
    if [[ $# -lt 2 ]]; then
      usage_error "$option is missing its value (see --help)"
    fi
    if ! $inline_value && is_one_of "$2" "${value_options[@]}" "${flag_options[@]}"; then
      usage_error "$option is missing its value, because the next argument is the option $2 (see --help)"
    fi
    value=$2
    shift 2
  elif is_one_of "$option" "${flag_options[@]}"; then
    if $inline_value; then
      usage_error "$option takes no value, got \"$2\" (write $option alone)"
    fi
    shift
  else
    usage_error "unknown option \"$option\" (see --help for the options)"
  fi
  case "$option" in
    -n|--namespace) namespace=$value ;;
    -s|--service) service=$value ;;
    --secret) secret=$value ;;
    --webhook-config) webhook_config=$value ;;
    --dns) extra_dns+=("$value") ;;
    --ip) extra_ips+=("$value") ;;
    --dir)
      [[ -n $value ]] || usage_error "--dir must be a directory path, got \"\""
      dir=$value ;;
    --files-only) files_only=true ;;
    --rotate-ca) rotate_ca=true ;;
    --days) days=$value ;;
    --renew-days) renew_days=$value ;;
    --context)
      [[ -n $value ]] || usage_error "--context must name a kubectl context (see kubectl config get-contexts), got \"\""
      kubectl_args=(--context "$value") ;;
    -h|--help) usage; exit 0 ;;
  esac
done

# The name rules are those that Kubernetes applies to each kind of object.
dns1123_label='^[a-z0-9]([-a-z0-9]*[a-z0-9])?$'
dns1035_label='^[a-z]([-a-z0-9]*[a-z0-9])?$'
dns1123_subdomain='^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'
# A DNS name for the certificate: labels of letters, digits and "-", optionally "*." first.
dns_name='^(\*\.)?[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([-A-Za-z0-9]{0,61}[A-Za-z0-9])?)*$'

# Succeeds when $1 is a whole number from $2 to $3. Leading zeros are allowed.
is_number_in_range() {
  [[ $1 =~ ^[0-9]{1,9}$ ]] && ((10#$1 >= $2 && 10#$1 <= $3))
}

is_ipv4() {
  local octet
  [[ $1 =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] || return 1
  for octet in "${BASH_REMATCH[@]:1}"; do
    ((10#$octet <= 255)) || return 1
  done
}

# Succeeds for an IPv6 address in RFC 4291 text form: eight groups of up to four hex
# digits, or fewer with one "::", optionally ending in an IPv4 address.
is_ipv6() {
  local address=$1 part group groups=0 parts=() group_list=()
  [[ $address == *:* && $address =~ ^[0-9A-Fa-f:.]+$ ]] || return 1
  if [[ $address == *.* ]]; then
    # The IPv4 address at the end takes the place of the last two groups.
    is_ipv4 "${address##*:}" || return 1
    address="${address%:*}:0:0"
  fi
  if [[ $address == *::* ]]; then
    [[ ${address#*::} != *::* ]] || return 1
    parts=("${address%%::*}" "${address#*::}")
  else
    parts=("$address")
  fi
  for part in "${parts[@]}"; do
    [[ -z $part ]] && continue
    [[ $part != :* && $part != *: ]] || return 1
    IFS=: read -ra group_list <<<"$part"
    for group in "${group_list[@]}"; do
      [[ $group =~ ^[0-9A-Fa-f]{1,4}$ ]] || return 1
      groups=$((groups + 1))
    done
  done
  if ((${#parts[@]} == 2)); then
    ((groups <= 7))
  else
    ((groups == 8))
  fi
}

label_rule='lowercase letters, digits and "-", at most 63 characters'
subdomain_rule='lowercase letters, digits, "-" and ".", starting and ending with a letter or digit'
if ! [[ $namespace =~ $dns1123_label && ${#namespace} -le 63 ]]; then
  usage_error "--namespace must be a DNS-1123 label ($label_rule, starting and ending with a letter or digit), got \"$namespace\""
fi
if ! [[ $service =~ $dns1035_label && ${#service} -le 63 ]]; then
  usage_error "--service must be a DNS-1035 label, as for every Service name ($label_rule, starting with a letter and ending with a letter or digit), got \"$service\""
fi
# The CA is kept in the Secret NAME-ca, whose name may have at most 253 characters.
if ! [[ $secret =~ $dns1123_subdomain && ${#secret} -le 250 ]]; then
  usage_error "--secret must be a DNS-1123 subdomain ($subdomain_rule, at most 250 characters so that NAME-ca fits in 253), got \"$secret\""
fi
if ! [[ $webhook_config =~ $dns1123_subdomain && ${#webhook_config} -le 253 ]]; then
  usage_error "--webhook-config must be a DNS-1123 subdomain ($subdomain_rule, at most 253 characters), got \"$webhook_config\""
fi
for name in "${extra_dns[@]}"; do
  if ! [[ $name =~ $dns_name && ${#name} -le 253 ]]; then
    usage_error "--dns must be a DNS name such as webhook.example.org (labels of letters, digits and \"-\" of at most 63 characters, optionally \"*.\" first, at most 253 characters), got \"$name\""
  fi
done
for address in "${extra_ips[@]}"; do
  if ! is_ipv4 "$address" && ! is_ipv6 "$address"; then
    usage_error "--ip must be an IPv4 or IPv6 address such as 127.0.0.1 or ::1, got \"$address\""
  fi
done
if $files_only && [[ -z $dir ]]; then
  usage_error "--files-only needs --dir DIR, the directory to read and write the files in"
fi
if [[ -n $dir && -e $dir && ! -d $dir ]]; then
  usage_error "--dir must be a directory path, got \"$dir\", which exists and is not a directory"
fi
if ! is_number_in_range "$days" 1 "$ca_days"; then
  usage_error "--days must be a whole number of days from 1 to $ca_days, got \"$days\""
fi
days=$((10#$days))
# A threshold of --days or more would reissue the certificate on every run.
if ! is_number_in_range "$renew_days" 0 $((days - 1)); then
  usage_error "--renew-days must be a whole number of days from 0 to $((days - 1)) (less than --days $days), got \"$renew_days\""
fi
renew_days=$((10#$renew_days))
if ! command -v openssl >/dev/null; then
  echo "certs.sh: openssl not found on PATH. Install it (Debian: apt-get install openssl)." >&2
  exit 1
fi
if ! $files_only && ! command -v kubectl >/dev/null; then
  echo "certs.sh: kubectl not found on PATH. Install it, or write only files with --files-only --dir DIR." >&2
  exit 1
fi

say() { echo "certs.sh: $*"; }
kube() { kubectl "${kubectl_args[@]}" "$@"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
umask 077

dns_names=("$service" "$service.$namespace" "$service.$namespace.svc" "$service.$namespace.svc.cluster.local" "${extra_dns[@]}")

# kubectl_read_failed OBJECT RESOURCE: prints kubectl's error output for reading OBJECT and
# the checks to make, with RESOURCE as kubectl auth can-i takes it, then exits with status 1.
kubectl_read_failed() {
  local object=$1 resource=$2
  {
    echo "certs.sh: kubectl failed to read $object, so nothing was changed. kubectl's error:"
    sed 's/^/  /' "$work/kubectl.err"
    echo "certs.sh: check that the kubectl context exists (kubectl config get-contexts; select one with --context), that the API server is reachable (kubectl cluster-info), and that you may read it (kubectl auth can-i get $resource), then run this script again."
  } >&2
  exit 1
}

# Copies the Secret's key KEY, base64-decoded, to FILE. Fails when the Secret or key is
# absent, and exits through kubectl_read_failed on any other kubectl error.
secret_key_to_file() {
  local name=$1 key=$2 file=$3 value
  if ! value=$(kube -n "$namespace" get secret "$name" --ignore-not-found \
      -o "jsonpath={.data.${key//./\\.}}" 2>"$work/kubectl.err"); then
    kubectl_read_failed "Secret $namespace/$name" "secrets -n $namespace"
  fi
  [[ -n $value ]] || return 1
  printf '%s' "$value" | base64 -d >"$file"
}

# Reads the MutatingWebhookConfiguration into webhook_count (its number of webhooks, empty
# when it does not exist) and current_bundles (each webhook's caBundle, one a line).
load_webhook_config() {
  local listing
  # The literal "found:" distinguishes an existing configuration from a missing one, for
  # which --ignore-not-found prints nothing.
  if ! listing=$(kube get mutatingwebhookconfiguration "$webhook_config" --ignore-not-found \
      -o 'jsonpath=found:{range .webhooks[*]}x{end}' 2>"$work/kubectl.err"); then
    kubectl_read_failed "MutatingWebhookConfiguration $webhook_config" "mutatingwebhookconfigurations"
  fi
  webhook_count=
  current_bundles=
  [[ -n $listing ]] || return 0
  listing=${listing#found:}
  webhook_count=${#listing}
  if ! current_bundles=$(kube get mutatingwebhookconfiguration "$webhook_config" \
      -o jsonpath='{range .webhooks[*]}{.clientConfig.caBundle}{"\n"}{end}' 2>"$work/kubectl.err"); then
    kubectl_read_failed "MutatingWebhookConfiguration $webhook_config" "mutatingwebhookconfigurations"
  fi
}

# Succeeds when the Secret NAME exists, and exits through kubectl_read_failed when kubectl
# cannot tell.
secret_exists() {
  local name=$1 listing
  if ! listing=$(kube -n "$namespace" get secret "$name" --ignore-not-found -o name 2>"$work/kubectl.err"); then
    kubectl_read_failed "Secret $namespace/$name" "secrets -n $namespace"
  fi
  [[ -n $listing ]]
}

# Loads the current state into $work: from the cluster unless --files-only, else from --dir.
# Sets ca_source and previous_source to where ca.crt and ca-previous.crt came from, for
# messages.
load_existing() {
  local file
  ca_source="the key ca.crt of the Secret $namespace/$secret-ca"
  previous_source="the key ca-previous.crt of the Secret $namespace/$secret-ca"
  if ! $files_only; then
    if ! { secret_key_to_file "$secret-ca" ca.crt "$work/ca.crt" && secret_key_to_file "$secret-ca" ca.key "$work/ca.key"; }; then
      rm -f "$work/ca.crt" "$work/ca.key"
    fi
    secret_key_to_file "$secret-ca" ca-previous.crt "$work/ca-previous.crt" || rm -f "$work/ca-previous.crt"
    if ! { secret_key_to_file "$secret" tls.crt "$work/tls.crt" && secret_key_to_file "$secret" tls.key "$work/tls.key"; }; then
      rm -f "$work/tls.crt" "$work/tls.key"
    fi
    load_webhook_config
  fi
  if [[ -n $dir && ! -f $work/ca.crt ]]; then
    [[ -f $dir/ca.crt ]] && ca_source="$dir/ca.crt"
    [[ -f $dir/ca-previous.crt ]] && previous_source="$dir/ca-previous.crt"
    for file in ca.crt ca.key ca-previous.crt tls.crt tls.key; do
      [[ -f $dir/$file ]] && cp "$dir/$file" "$work/$file"
    done
  fi
  if [[ ! -f $work/ca.crt || ! -f $work/ca.key ]]; then
    rm -f "$work/ca.crt" "$work/ca.key"
  fi
}

# Moves the current CA to ca-previous.crt and creates a new one.
replace_ca() {
  mv "$work/ca.crt" "$work/ca-previous.crt"
  rm -f "$work/ca.key"
  create_ca
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

# Prints why the current CA must be replaced, or nothing when it may stay. The webhook
# stops working when its CA expires, even when the serving certificate is still valid.
ca_renewal_reason() {
  local end
  end=$(openssl x509 -in "$work/ca.crt" -noout -enddate 2>/dev/null) || end="notAfter=unknown"
  end=${end#notAfter=}
  if ! openssl x509 -in "$work/ca.crt" -noout -checkend $((renew_days * 86400)) >/dev/null 2>&1; then
    echo "it expires on $end, within --renew-days $renew_days"
  elif ! serving_cert_is_current \
      && ! openssl x509 -in "$work/ca.crt" -noout -checkend $((days * 86400)) >/dev/null 2>&1; then
    echo "it expires on $end, before a serving certificate issued now for --days $days would"
  fi
}

issue_serving_cert() {
  local san="" name address common_name="$service.$namespace.svc"
  for name in "${dns_names[@]}"; do san+="DNS:$name,"; done
  for address in "${extra_ips[@]}"; do san+="IP:$address,"; done
  # X.509 limits the common name to 64 characters. Go's TLS client, which kube-apiserver
  # uses, matches only the subject alternative names, so a long name falls back to the Service.
  ((${#common_name} <= 64)) || common_name=$service
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$work/tls.key" -out "$work/tls.csr" -subj "/CN=$common_name" 2>/dev/null
  printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n' \
    "${san%,}" >"$work/tls.ext"
  openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
    -days "$days" -sha256 -extfile "$work/tls.ext" -out "$work/tls.crt" 2>/dev/null
}

# Prints why openssl cannot use FILE as a certificate (KIND cert) or private key (KIND key),
# or nothing when it can.
openssl_read_error() {
  local kind=$1 file=$2 command=x509
  [[ $kind == key ]] && command=pkey
  if ! openssl "$command" -in "$file" -noout 2>"$work/openssl.err"; then
    # openssl names the file it read, which is a temporary copy, so only its last line is kept.
    grep -v '^[[:space:]]*$' "$work/openssl.err" | tail -n 1 || echo "openssl $command failed"
  fi
}

# unreadable_ca WHAT SOURCE ERROR FILE: stops the script over a stored CA certificate that
# openssl cannot read, or with --rotate-ca deletes FILE so that it never enters the caBundle.
unreadable_ca() {
  local what=$1 source=$2 error=$3 file=$4
  if $rotate_ca; then
    rm -f "$file"
    say "discarded $what from $source, because openssl cannot read it (openssl: $error); it is left out of the caBundle"
    return
  fi
  {
    echo "certs.sh: cannot read $what from $source (openssl: $error), so nothing was changed."
    echo "certs.sh: remove it, or pass --rotate-ca to replace it with a new CA. Either way it is left out of the caBundle."
  } >&2
  exit 1
}

# Checks the stored CA certificate, its key and the previous CA certificate before any of
# them is used or written.
check_stored_cas() {
  local error key_source=${ca_source/ca.crt/ca.key}
  if [[ -f $work/ca.crt ]]; then
    error=$(openssl_read_error cert "$work/ca.crt")
    if [[ -n $error ]]; then
      unreadable_ca "the CA certificate" "$ca_source" "$error" "$work/ca.crt"
      rm -f "$work/ca.key"
    fi
  fi
  if [[ -f $work/ca.crt ]]; then
    error=$(openssl_read_error key "$work/ca.key")
    if [[ -z $error && $(openssl x509 -in "$work/ca.crt" -noout -pubkey) != $(openssl pkey -in "$work/ca.key" -pubout) ]]; then
      error="it does not match the CA certificate"
    fi
    if [[ -n $error ]] && ! $rotate_ca; then
      echo "certs.sh: cannot use the CA key from $key_source: $error, so nothing was changed. Restore the key of that CA, or pass --rotate-ca to replace the CA." >&2
      exit 1
    fi
    # With --rotate-ca the key is not used: the readable CA certificate becomes the
    # previous CA, so that the caBundle still trusts the serving certificate it signed.
  fi
  if [[ -f $work/ca-previous.crt ]]; then
    error=$(openssl_read_error cert "$work/ca-previous.crt")
    if [[ -n $error ]]; then
      unreadable_ca "the previous CA certificate" "$previous_source" "$error" "$work/ca-previous.crt"
    fi
  fi
}

# check_right VERB RESOURCE [ARGS...]: adds the kubectl auth can-i command for the right to
# missing_rights when that command prints "no", and stops on any other kubectl error.
check_right() {
  local answer
  if answer=$(kube auth can-i "$@" 2>"$work/kubectl.err"); then
    return 0
  fi
  if [[ $answer == no* ]]; then
    missing_rights+=("kubectl auth can-i $*")
    return 0
  fi
  {
    echo "certs.sh: kubectl failed to check the right to $1 $2, so nothing was changed. kubectl's error:"
    sed 's/^/  /' "$work/kubectl.err"
  } >&2
  exit 1
}

# Checks every right that the writes below need, and stops before any write when one is
# missing. kubectl apply gets a Secret and then creates or patches it, and a Role may grant
# get and patch for named Secrets only, so those two are checked by name.
check_rights() {
  local name
  missing_rights=()
  # The write right for each Secret, as kubectl auth can-i takes it.
  declare -gA secret_right=()
  for name in "$secret-ca" "$secret"; do
    check_right get "secrets/$name" -n "$namespace"
    if secret_exists "$name"; then
      secret_right[$name]="patch secrets/$name -n $namespace"
    else
      secret_right[$name]="create secrets -n $namespace"
    fi
    # The right is split into words on purpose: VERB RESOURCE -n NAMESPACE.
    # shellcheck disable=SC2086
    check_right ${secret_right[$name]}
  done
  if [[ -n $webhook_count ]]; then
    check_right get "mutatingwebhookconfigurations/$webhook_config"
    check_right patch "mutatingwebhookconfigurations/$webhook_config"
  fi
  ((${#missing_rights[@]} == 0)) && return 0
  {
    echo "certs.sh: your kubectl user lacks rights that this run needs, so nothing was changed. kubectl auth can-i prints \"no\" for:"
    printf '  %s\n' "${missing_rights[@]}"
    echo "certs.sh: grant them (a Role in namespace $namespace for secrets, a ClusterRole for mutatingwebhookconfigurations), or use a kubectl context whose user has them (--context), then run this script again."
  } >&2
  exit 1
}

load_existing
check_stored_cas
$files_only || check_rights

ca_reason=
if [[ -f $work/ca.crt ]] && ! $rotate_ca; then
  ca_reason=$(ca_renewal_reason)
fi
if $rotate_ca && [[ -f $work/ca.crt ]]; then
  replace_ca
  say "CA rotated; the previous CA stays in the caBundle until the next rotation"
elif [[ -n $ca_reason ]]; then
  replace_ca
  say "CA rotated because $ca_reason; the previous CA stays in the caBundle until the next rotation"
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

# Descriptions of the objects written so far, for the message when a later write fails.
changed=()

# kubectl_write_failed OBJECT RIGHT: prints kubectl's error output for writing OBJECT, what
# this run already changed and how to finish, with RIGHT as kubectl auth can-i takes it,
# then exits with status 1.
kubectl_write_failed() {
  local object=$1 right=$2 item rerun="run this script again"
  {
    echo "certs.sh: kubectl failed to write $object. kubectl's error:"
    sed 's/^/  /' "$work/kubectl.err"
    if ((${#changed[@]} == 0)); then
      echo "certs.sh: nothing was changed in the cluster."
    else
      echo "certs.sh: already changed in the cluster:"
      for item in "${changed[@]}"; do echo "  $item"; done
      echo "certs.sh: the TLS Secret $namespace/$secret is not written yet, so the webhook keeps serving its current certificate."
    fi
    if [[ -n $dir ]]; then
      echo "certs.sh: the files in $dir were not written."
    fi
    if $rotate_ca && [[ " ${changed[*]} " == *" Secret $namespace/$secret-ca "* ]]; then
      # The CA Secret now contains the new CA. Another --rotate-ca would make the new CA the
      # previous one and drop the CA that signed the serving certificate still in use.
      rerun="run this script again without --rotate-ca"
    fi
    echo "certs.sh: to finish, $rerun with a user that has the right (kubectl auth can-i $right)."
  } >&2
  exit 1
}

# apply_secret NAME CREATE_ARGS...: creates or updates the Secret NAME from the
# manifest that kubectl create CREATE_ARGS --dry-run=client prints.
apply_secret() {
  local name=$1 manifest output line
  shift
  if ! manifest=$(kube -n "$namespace" create secret "$@" --dry-run=client -o yaml 2>"$work/kubectl.err") \
      || ! output=$(kube apply -f - <<<"$manifest" 2>"$work/kubectl.err"); then
    kubectl_write_failed "the Secret $namespace/$name" "${secret_right[$name]}"
  fi
  while IFS= read -r line; do say "$line"; done <<<"$output"
  [[ $output == *" unchanged" ]] || changed+=("Secret $namespace/$name")
}

write_files() {
  local file
  mkdir -p "$dir"
  for file in ca.crt ca.key tls.crt tls.key ca-bundle.crt ca-previous.crt; do
    if [[ -f $work/$file ]] && ! cmp -s "$work/$file" "$dir/$file"; then
      # Write beside the target and rename, so that a reader never sees half a file.
      cp "$work/$file" "$dir/.$file.tmp" && mv "$dir/.$file.tmp" "$dir/$file"
      say "wrote $dir/$file"
    fi
  done
}

if $files_only; then
  write_files
  exit 0
fi

# The caBundle goes first: it trusts the new CA and still the previous one, so the serving
# certificate in use stays trusted whichever write below fails.
if [[ -n $webhook_count ]]; then
  bundle=$(base64 -w0 <"$work/ca-bundle.crt")
  patch="["
  stale=0
  for ((i = 0; i < webhook_count; i++)); do
    patch+="{\"op\":\"add\",\"path\":\"/webhooks/$i/clientConfig/caBundle\",\"value\":\"$bundle\"},"
    [[ $(sed -n "$((i + 1))p" <<<"$current_bundles") == "$bundle" ]] || stale=$((stale + 1))
  done
  patch="${patch%,}]"
  if [[ $stale -eq 0 ]]; then
    say "caBundle of mutatingwebhookconfiguration/$webhook_config unchanged ($webhook_count webhooks)"
  else
    if ! kube patch mutatingwebhookconfiguration "$webhook_config" --type=json -p "$patch" >/dev/null 2>"$work/kubectl.err"; then
      kubectl_write_failed "the caBundle of mutatingwebhookconfiguration/$webhook_config" "patch mutatingwebhookconfigurations/$webhook_config"
    fi
    changed+=("caBundle of mutatingwebhookconfiguration/$webhook_config")
    say "caBundle of mutatingwebhookconfiguration/$webhook_config written ($stale of $webhook_count webhooks changed)"
  fi
fi

ca_files=(--from-file=ca.crt="$work/ca.crt" --from-file=ca.key="$work/ca.key")
[[ -f $work/ca-previous.crt ]] && ca_files+=(--from-file=ca-previous.crt="$work/ca-previous.crt")
apply_secret "$secret-ca" generic "$secret-ca" "${ca_files[@]}"
# The webhook reloads the serving certificate from this Secret, so it is written last.
apply_secret "$secret" tls "$secret" --cert="$work/tls.crt" --key="$work/tls.key"

if [[ -n $dir ]]; then
  write_files
fi

if [[ -z $webhook_count ]]; then
  say "MutatingWebhookConfiguration $webhook_config not found; apply it and run this script again to set its caBundle"
fi
