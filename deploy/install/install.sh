#!/bin/sh
# restic-manager agent installer for Linux.
#
# The console's enrolment dialog shows the line to paste, for example:
#
#   printf '%s\n' '-----BEGIN CERTIFICATE-----' 'MIIB...' '-----END CERTIFICATE-----' |
#       curl -fsSL --cacert /dev/stdin https://console:8080/install.sh |
#       sudo sh -s -- --server https://console:8080 --token rme_... --ca-fingerprint 3f9a...
#
# The console's generated CA is written out in the line and is curl's CA
# file for this script, so that nothing runs unless the server holds a
# certificate from it (with a certificate from a public CA the line is just
# curl URL | sudo sh). The console serves this script with that CA filled in
# below (CONSOLE_CA).
#
# It downloads the agent for this machine's architecture from the console
# (SERVER/downloads/restic-manager-agent-linux-ARCH), checks that it runs,
# installs it as PREFIX/usr/local/bin/restic-manager-agent, enrols it with
# the one-time token, or with a reusable enrolment key that makes this
# machine a new host (config: PREFIX/etc/restic-manager/agent.yaml, mode
# 0600, its state directory beside it) and installs and starts the service
# (a systemd unit on systemd machines).
#
# With --ca-fingerprint (the console's generated CA), the CA this script
# carries, or the one given with --ca-file, is checked against the
# fingerprint and then the only CA trusted for the download; the agent pins
# it for good at enrolment. Nothing is ever fetched without verification.
# To read the script before running it:
#
#   curl -fsSL --cacert ca.pem -o install.sh https://console:8080/install.sh
#
# Options:
#   --server URL          the console (required unless upgrading with --binary)
#   --token TOKEN         one-time enrolment token (or RM_ENROLL_TOKEN); leave
#                         it out to upgrade an enrolled machine's agent
#   --key KEY             reusable enrolment key (or RM_ENROLL_KEY), instead
#                         of a token: the console makes a host for this machine
#   --name NAME           with --key: the host's name (default: the hostname)
#   --labels k=v,...      with --key: labels of this host's own, if the key
#                         allows them (the key's labels win on a conflict)
#   --ca-fingerprint FP   SHA-256 fingerprint of the console's CA
#   --ca-file FILE        the console's CA (PEM, from SERVER/ca.pem), when this
#                         script does not carry it (a copy not served by the
#                         console); checked against --ca-fingerprint
#   --prefix DIR          install below DIR instead of / (for tests, chroots)
#   --restic PATH         restic binary the agent uses (default: restic on PATH)
#   --binary FILE         install this agent binary instead of downloading it
#   --no-service          do not install or start the service
#
# POSIX sh (dash, busybox ash); needs curl or wget unless --binary is given.

set -eu

# The console's generated CA (PEM), written in by the console when it serves
# this script; empty in the source tree (then --ca-file gives it).
CONSOLE_CA=''

log() { printf 'install.sh: %s\n' "$*" >&2; }
die() {
	printf 'install.sh: error: %s\n' "$*" >&2
	exit 1
}

usage() {
	cat <<'EOF'
Usage: install.sh --server URL --token TOKEN [--ca-fingerprint FP [--ca-file FILE]]
                  [--prefix DIR] [--restic PATH] [--binary FILE] [--no-service]
       install.sh --server URL --key KEY [--name NAME] [--labels k=v,...] [...]

Installs the restic-manager agent, enrols this machine with the one-time
token (or the enrolment key) and installs and starts its service. Without
--token or --key, upgrades the agent of an enrolled machine.

  --server URL          the console (required unless upgrading with --binary)
  --token TOKEN         one-time enrolment token (or RM_ENROLL_TOKEN)
  --key KEY             reusable enrolment key (or RM_ENROLL_KEY): the console
                        makes a new host for this machine with the key's labels
  --name NAME           with --key: the host's name (default: the hostname)
  --labels k=v,...      with --key: this host's own labels, if the key allows
  --ca-fingerprint FP   SHA-256 fingerprint of the console's CA
  --ca-file FILE        the console's CA (PEM), checked against the fingerprint,
                        for a copy of this script the console did not serve
  --prefix DIR          install below DIR instead of /
  --restic PATH         restic binary the agent uses (default: restic on PATH)
  --binary FILE         install this agent binary instead of downloading it
  --no-service          do not install or start the service
EOF
}

# need_arg OPTION COUNT: an option's value must be there.
need_arg() {
	[ "$2" -ge 2 ] || die "$1 needs a value"
}

# sha256_hex: lowercase hex SHA-256 of stdin.
sha256_hex() {
	if command -v sha256sum >/dev/null 2>&1; then
		sha256sum | cut -d ' ' -f 1
	elif command -v shasum >/dev/null 2>&1; then
		shasum -a 256 | cut -d ' ' -f 1
	elif command -v openssl >/dev/null 2>&1; then
		openssl dgst -sha256 -r | cut -d ' ' -f 1
	else
		die "cannot compute SHA-256 (no sha256sum, shasum or openssl)"
	fi
}

# cert_fingerprint FILE: SHA-256 of the DER of the first certificate in a
# PEM file, the form the console shows; fails for a file that is not one.
cert_fingerprint() {
	awk '/^-----BEGIN CERTIFICATE-----/ { found = 1 } END { exit !found }' "$1" || return 1
	if command -v openssl >/dev/null 2>&1; then
		openssl x509 -in "$1" -noout 2>/dev/null || return 1
		openssl x509 -in "$1" -outform DER | sha256_hex
	elif command -v base64 >/dev/null 2>&1; then
		awk '/-----BEGIN CERTIFICATE-----/ { on = 1; next }
		     /-----END CERTIFICATE-----/ { exit }
		     on { print }' "$1" | base64 -d | sha256_hex
	else
		die "cannot read the CA certificate (no openssl or base64)"
	fi
}

# fetch URL FILE [CAFILE]: download with curl, else wget, trusting the
# system's CAs, or CAFILE (checked against the pinned fingerprint).
fetch() {
	if command -v curl >/dev/null 2>&1; then
		if [ -n "${3:-}" ]; then
			curl -fsSL --retry 3 --cacert "$3" -o "$2" "$1"
		else
			curl -fsSL --retry 3 -o "$2" "$1"
		fi
	elif command -v wget >/dev/null 2>&1; then
		if [ -n "${3:-}" ]; then
			wget -q --ca-certificate="$3" -O "$2" "$1"
		else
			wget -q -O "$2" "$1"
		fi
	else
		die "neither curl nor wget is installed: install one of them, or download the agent yourself and pass --binary FILE"
	fi
}

main() {
	SERVER=
	TOKEN=
	KEY=
	NAME=
	LABELS=
	NAME_SET=
	LABELS_SET=
	CA_FP=
	CA_FILE=
	PREFIX=
	RESTIC=
	BINARY=
	NO_SERVICE=
	while [ $# -gt 0 ]; do
		case $1 in
		--server) need_arg "$1" $#; SERVER=$2; shift 2 ;;
		--server=*) SERVER=${1#*=}; shift ;;
		--token) need_arg "$1" $#; TOKEN=$2; shift 2 ;;
		--token=*) TOKEN=${1#*=}; shift ;;
		--key) need_arg "$1" $#; KEY=$2; shift 2 ;;
		--key=*) KEY=${1#*=}; shift ;;
		--name) need_arg "$1" $#; NAME=$2; NAME_SET=1; shift 2 ;;
		--name=*) NAME=${1#*=}; NAME_SET=1; shift ;;
		--labels) need_arg "$1" $#; LABELS=$2; LABELS_SET=1; shift 2 ;;
		--labels=*) LABELS=${1#*=}; LABELS_SET=1; shift ;;
		--ca-fingerprint) need_arg "$1" $#; CA_FP=$2; shift 2 ;;
		--ca-fingerprint=*) CA_FP=${1#*=}; shift ;;
		--ca-file) need_arg "$1" $#; CA_FILE=$2; shift 2 ;;
		--ca-file=*) CA_FILE=${1#*=}; shift ;;
		--prefix) need_arg "$1" $#; PREFIX=$2; shift 2 ;;
		--prefix=*) PREFIX=${1#*=}; shift ;;
		--restic) need_arg "$1" $#; RESTIC=$2; shift 2 ;;
		--restic=*) RESTIC=${1#*=}; shift ;;
		--binary) need_arg "$1" $#; BINARY=$2; shift 2 ;;
		--binary=*) BINARY=${1#*=}; shift ;;
		--no-service) NO_SERVICE=1; shift ;;
		-h | --help) usage; exit 0 ;;
		*) die "unknown option $1 (see --help)" ;;
		esac
	done

	# The environment fills in only when neither option is given, so that
	# a variable left in the shell never adds a second credential.
	if [ -z "$TOKEN" ] && [ -z "$KEY" ]; then
		TOKEN=${RM_ENROLL_TOKEN:-}
		KEY=${RM_ENROLL_KEY:-}
	fi
	[ -z "$TOKEN" ] || [ -z "$KEY" ] || die "give --token or --key, not both (a token enrols a host made in the console; a key makes a new one)"
	if [ -z "$KEY" ] && { [ -n "$NAME_SET" ] || [ -n "$LABELS_SET" ]; }; then
		die "--name and --labels go with --key (a token's host is named and labelled in the console)"
	fi
	# CRED is whichever was given: enrol with it, or upgrade without.
	CRED=$TOKEN$KEY

	SERVER=${SERVER%/}
	PREFIX=${PREFIX%/}
	# The config records its state directory's path: make it absolute.
	case $PREFIX in
	'' | /*) ;;
	*) PREFIX=$(pwd)/$PREFIX ;;
	esac
	CA_FP=$(printf '%s' "$CA_FP" | tr -d ':' | tr 'ABCDEF' 'abcdef')
	BIN_DIR=$PREFIX/usr/local/bin
	AGENT=$BIN_DIR/restic-manager-agent
	CONF_DIR=$PREFIX/etc/restic-manager
	CONFIG=$CONF_DIR/agent.yaml

	case $(uname -s) in
	Linux) OS=linux ;;
	*) die "this installer is for Linux (found $(uname -s)); on Windows use install.ps1" ;;
	esac
	case $(uname -m) in
	x86_64 | amd64) ARCH=amd64 ;;
	aarch64 | arm64) ARCH=arm64 ;;
	*) die "no agent build for this architecture ($(uname -m)); builds exist for amd64 and arm64" ;;
	esac

	if [ -z "$PREFIX" ] && [ "$(id -u)" -ne 0 ]; then
		die "run as root (sudo sh ...) to install into /usr/local and /etc, or pass --prefix DIR"
	fi
	if [ -e "$CONFIG" ] && [ -n "$CRED" ]; then
		die "$CONFIG exists: this machine is already enrolled. To upgrade its agent, run again without --token or --key; to enrol it anew, stop the agent and remove $CONFIG and $CONF_DIR/state first."
	fi
	if [ ! -e "$CONFIG" ] && [ -z "$CRED" ]; then
		die "--token is required to enrol this machine, or --key (the console shows them with the install line)"
	fi
	if [ -z "$SERVER" ] && { [ -z "$BINARY" ] || [ -n "$CRED" ]; }; then
		die "--server URL is required"
	fi
	case $SERVER in
	'' | https://*) ;;
	http://*) log "warning: $SERVER is plain HTTP: the agent and its credential travel unencrypted (use this on a trusted network only)" ;;
	*) die "--server must be an http:// or https:// URL, not $SERVER" ;;
	esac
	if [ -n "$CA_FP" ]; then
		case $CA_FP in
		*[!0-9a-f]*) die "--ca-fingerprint must be the hex SHA-256 the console shows" ;;
		esac
		[ ${#CA_FP} -eq 64 ] || die "--ca-fingerprint must be 64 hex digits (SHA-256), got ${#CA_FP}"
	fi
	if [ -n "$CA_FILE" ]; then
		[ -n "$CA_FP" ] || die "--ca-file needs --ca-fingerprint (the console shows it): a CA is trusted only once its fingerprint is checked"
		[ -f "$CA_FILE" ] || die "--ca-file $CA_FILE: no such file"
	fi

	TMP=$(mktemp -d "${TMPDIR:-/tmp}/restic-manager-install.XXXXXX")
	trap 'rm -rf "$TMP"' EXIT
	trap 'exit 130' INT TERM

	CAFILE=
	if [ -n "$CA_FP" ] && [ -z "$BINARY" ]; then
		case $SERVER in
		https://*)
			if [ -n "$CA_FILE" ]; then
				cp "$CA_FILE" "$TMP/ca.pem"
			elif [ -n "$CONSOLE_CA" ]; then
				printf '%s\n' "$CONSOLE_CA" >"$TMP/ca.pem"
			fi
			if [ -f "$TMP/ca.pem" ]; then
				got=$(cert_fingerprint "$TMP/ca.pem") || die "the console's CA is not a PEM certificate"
				[ "$got" = "$CA_FP" ] || die "the console's CA has fingerprint $got, not $CA_FP: refusing to trust it (wrong server, or someone in between)"
				CAFILE=$TMP/ca.pem
			else
				log "no CA to check against the fingerprint (this copy of the script was not served by the console, and no --ca-file): the download trusts this machine's CAs"
			fi
			;;
		esac
	fi

	if [ -n "$BINARY" ]; then
		[ -f "$BINARY" ] || die "--binary $BINARY: no such file"
		cp "$BINARY" "$TMP/agent"
	else
		url=$SERVER/downloads/restic-manager-agent-$OS-$ARCH
		log "downloading $url"
		if ! fetch "$url" "$TMP/agent" "$CAFILE"; then
			[ -n "$CAFILE" ] || [ -z "$CA_FP" ] || die "could not download $url (a console with its own CA: pass --ca-file with its ca.pem, or use the script the console serves at $SERVER/install.sh)"
			die "could not download $url"
		fi
	fi
	chmod 0755 "$TMP/agent"
	# A download that is an error page, or a build for another machine,
	# fails here rather than after it replaced a working agent.
	if ! version=$("$TMP/agent" version 2>&1); then
		die "the agent binary does not run on this machine: $version"
	fi
	case $version in
	restic-manager-agent\ *) log "got $version" ;;
	*) die "the downloaded file is not the restic-manager agent (it says: $version)" ;;
	esac

	mkdir -p "$BIN_DIR"
	# Rename into place: a running agent keeps its old file, and the
	# binary is never seen half-written.
	cp "$TMP/agent" "$BIN_DIR/.restic-manager-agent.new"
	chmod 0755 "$BIN_DIR/.restic-manager-agent.new"
	mv -f "$BIN_DIR/.restic-manager-agent.new" "$AGENT"
	log "installed $AGENT"

	if [ -n "$RESTIC" ]; then
		[ -x "$RESTIC" ] || log "warning: --restic $RESTIC is not an executable file; jobs will fail until it is"
	elif ! command -v restic >/dev/null 2>&1; then
		log "warning: restic is not on PATH; install restic 0.14 or newer (e.g. apt-get install restic), or pass --restic PATH"
	fi

	if [ -e "$CONFIG" ]; then
		log "keeping the existing enrolment in $CONFIG"
	else
		mkdir -p "$CONF_DIR"
		chmod 0700 "$CONF_DIR"
		set -- enroll --server "$SERVER" --config "$CONFIG"
		[ -z "$CA_FP" ] || set -- "$@" --ca-fingerprint "$CA_FP"
		[ -z "$RESTIC" ] || set -- "$@" --restic "$RESTIC"
		[ -z "$NAME_SET" ] || set -- "$@" --name "$NAME"
		[ -z "$LABELS_SET" ] || set -- "$@" --labels "$LABELS"
		# The token or key goes through the environment, not the command
		# line that every local user can read in ps.
		if [ -n "$KEY" ]; then
			RM_ENROLL_TOKEN='' RM_ENROLL_KEY=$KEY "$AGENT" "$@" || die "enrolment failed (an enrolment key works until it expires or is used up, and is refused once deleted: check it in the console's settings)"
		else
			RM_ENROLL_KEY='' RM_ENROLL_TOKEN=$TOKEN "$AGENT" "$@" || die "enrolment failed (a token works once and for 24 hours: make a new one in the console if needed)"
		fi
	fi

	if [ -n "$NO_SERVICE" ]; then
		log "not installing the service (--no-service); run: $AGENT run --config $CONFIG"
		log "(an agent that is already running keeps its old binary until it is restarted)"
	else
		[ "$(id -u)" -eq 0 ] || die "installing the service needs root: rerun with sudo, or pass --no-service"
		rc=0
		"$AGENT" service status --config "$CONFIG" >/dev/null 2>&1 || rc=$?
		case $rc in
		0 | 3)
			log "the service exists: restarting it with the new agent"
			"$AGENT" service restart --config "$CONFIG" || die "could not restart the service"
			;;
		*)
			"$AGENT" service install --config "$CONFIG" || die "could not install the service"
			"$AGENT" service start --config "$CONFIG" || die "could not start the service"
			;;
		esac
		sleep 2
		if "$AGENT" service status --config "$CONFIG" >/dev/null 2>&1; then
			log "the service is running"
		else
			log "warning: the service is not running; see journalctl -u restic-manager-agent and $CONF_DIR/state/agent.log"
		fi
	fi

	host=$(sed -n 's/^host_id: *//p' "$CONFIG" 2>/dev/null || true)
	log "done: this machine is host ${host:-?} of ${SERVER:-its console}"
}

# Everything runs from here, on the last line: a download cut short never
# runs half a script.
main "$@"
