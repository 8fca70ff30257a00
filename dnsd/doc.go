// Package dnsd owns weft's DNS server and its answer builder: every agent
// answers the mesh domain itself (nodes, services, SRV, PTR) so that a query
// never leaves the host.
//
// dnsd answers only from the immutable [Table] the agent hands it with
// [Server.SetTable]. It must not read state, gossip, health or policy itself:
// the agent filters by policy and health before it builds a table, so a table
// holds exactly what this host may see. [Answer] is the pure part (a table
// and a query in, a reply out); [Server] is the thin shell around it
// (listeners, access control, EDNS0 and truncation, forwarding, metrics).
//
// dnsd is never an open resolver: names outside the mesh domain go to the
// configured upstreams or get REFUSED, and only loopback and the AllowFrom
// prefixes are answered at all.
//
// Choices worth knowing (the README has the operator's view):
//   - ANY is answered with the name's A and AAAA records only (RFC 8482
//     allows a minimal answer); a name without them gets NODATA.
//   - Zone transfers (AXFR, IXFR) are REFUSED and never forwarded.
//   - Until the first table arrives every query is REFUSED: without a table
//     the server does not know its domain, and forwarding a mesh name
//     upstream would leak it.
//   - Responses received on the wire (QR set) are dropped before the handler,
//     so that two servers can never answer each other's errors in a loop;
//     [Server.ServeDNS] itself answers them FORMERR.
//   - UDP on a specific listen address is served by dnsd's own readers, a
//     few goroutines per socket with buffers of their own, since replies
//     leave from the bound address anyway. On 0.0.0.0 or :: a reply must
//     leave from the address the query came to, which takes IP_PKTINFO on
//     every packet: there, and for TCP everywhere, miekg/dns's server
//     serves and calls [Server.ServeDNS]. Both share one core.
package dnsd
