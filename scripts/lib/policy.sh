# policy.sh: shell helpers that scripts/image.sh and scripts/systemd-test.sh
# source to talk to a running mxpolicyd over loopback TCP.

# free_port prints a loopback port nobody answers on now.
free_port() {
	local p
	for _ in $(seq 50); do
		p=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# policy_ask PORT RECIPIENT sends one RCPT request, once, from a fixed client
# and sender to RECIPIENT, and prints the reply's action line (nothing when
# no reply came within 10 s).
policy_ask() {
	local reply=""
	if exec 3<>"/dev/tcp/127.0.0.1/$1"; then
		printf 'request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=192.0.2.10\nclient_name=mail.example.org\nhelo_name=mail.example.org\nsender=alice@example.org\nrecipient=%s\n\n' "$2" >&3
		IFS= read -r -t 10 reply <&3 || true
		exec 3<&-
	fi 2>/dev/null
	echo "$reply"
}
