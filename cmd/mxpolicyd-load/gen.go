package main

import (
	"fmt"
	"math/rand/v2"
	"strconv"
)

// pools are the sizes of the sets requests draw from. Greylisting keys a
// triplet by (client network, sender, recipient), so their product bounds
// the number of distinct triplets: large pools make almost every request a
// new triplet, small ones (after a warm-up run) make every triplet known.
type pools struct {
	clients, senders, recipients int
}

// generator writes the requests of one connection, as one Postfix smtpd
// process would: a message is one client and sender with rcptsPerMessage
// RCPT requests sharing an instance.
type generator struct {
	rnd     *rand.Rand
	pools   pools
	perMsg  int
	conn    int
	msgs    int // messages begun on this connection
	left    int // RCPT requests left in the current message
	client  int
	sender  int
	port    int
	size    int
	rcptNum int
}

func newGenerator(seed uint64, conn int, p pools, perMsg int) *generator {
	return &generator{
		rnd:    rand.New(rand.NewPCG(seed, uint64(conn))),
		pools:  p,
		perMsg: max(perMsg, 1),
		conn:   conn,
	}
}

// clientAddr maps client i to its own /24 (greylist's default IPv4
// prefix), so distinct clients are distinct greylisting networks up to
// 65,536 of them; beyond that they share networks.
func clientAddr(i int) string {
	return fmt.Sprintf("10.%d.%d.%d", (i>>8)&255, i&255, 1+(i>>16)%254)
}

func (g *generator) beginMessage() {
	g.msgs++
	g.left = g.perMsg
	g.client = g.rnd.IntN(g.pools.clients)
	g.sender = g.rnd.IntN(g.pools.senders)
	g.port = 1024 + g.rnd.IntN(64000)
	g.size = 1000 + g.rnd.IntN(100000)
	g.rcptNum = 0
}

// next appends the next request to b, in the attribute order Postfix 3.8
// sends (smtpd_check.c check_policy_service; policy/parse_test.go
// realRequest).
func (g *generator) next(b []byte) []byte {
	if g.left == 0 {
		g.beginMessage()
	}
	g.left--
	rcpt := g.rnd.IntN(g.pools.recipients)
	name := "mx" + strconv.Itoa(g.client) + ".client.example"
	attr := func(k, v string) { b = append(b, k...); b = append(b, '='); b = append(b, v...); b = append(b, '\n') }
	attr("request", "smtpd_access_policy")
	attr("protocol_state", "RCPT")
	attr("protocol_name", "ESMTP")
	attr("client_address", clientAddr(g.client))
	attr("client_name", name)
	attr("client_port", strconv.Itoa(g.port))
	attr("reverse_client_name", name)
	attr("server_address", "192.0.2.10")
	attr("server_port", "25")
	attr("helo_name", name)
	attr("sender", fmt.Sprintf("user%d@sender%d.example", g.sender, g.sender))
	attr("recipient", fmt.Sprintf("rcpt%d@example.net", rcpt))
	attr("recipient_count", strconv.Itoa(g.rcptNum))
	attr("queue_id", "")
	attr("instance", fmt.Sprintf("%x.%x.0", g.conn+1, g.msgs)) // one per message
	attr("size", strconv.Itoa(g.size))
	for _, k := range []string{"etrn_domain", "stress", "sasl_method", "sasl_username", "sasl_sender",
		"ccert_subject", "ccert_issuer", "ccert_fingerprint", "ccert_pubkey_fingerprint"} {
		attr(k, "")
	}
	attr("encryption_protocol", "TLSv1.3")
	attr("encryption_cipher", "TLS_AES_256_GCM_SHA384")
	attr("encryption_keysize", "256")
	attr("tls_sni", "mx.example.net")
	attr("policy_context", "")
	attr("compatibility_level", "3.6")
	attr("mail_version", "3.8.1")
	g.rcptNum++
	return append(b, '\n')
}
