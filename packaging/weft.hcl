# /etc/weft/weft.hcl - configuration of the weft agent.
#
# The packaged weft.service runs `weft agent -config-dir /etc/weft`: every
# *.hcl file in /etc/weft is read in lexical name order and, key by key, a
# later file wins (inside blocks too; a list is one key and is replaced
# whole). This file sorts after files named 00-*.hcl ... 99-*.hcl, so the
# keys set below win over theirs: change them here, or in a file that sorts
# after this one (zz-local.hcl).
#
# As shipped, this file is valid and the agent starts with it: it then waits
# for `weft join -token T ADDR...`. To make this host the first server of a
# new cluster, or to join through this file, set the keys of "Role" below.
# Then:
#
#   weft validate /etc/weft          # file:line:col for every problem
#   systemctl start weft             # or: systemctl reload weft
#
# On reload (SIGHUP) log_level, tags, join, service and dns are applied at
# run time; every other key needs `systemctl restart weft`. An invalid file
# is refused on reload and the agent keeps its running configuration.
#
# Unknown keys, wrong types and bad values are errors. Every key is listed
# below with its default; a key that is commented out keeps that default.
# The full reference is config/README.md in the weft source.

# ---------------------------------------------------------------- this host

# Name of this node: a DNS label (1-63 of a-z, 0-9, -). Default: the host
# name, lower-cased, up to its first dot. Changing it needs a new identity.
# node_name = "web-1"

# State directory: identity keys (0600), the last applied state, Raft data.
# The unit gives the agent write access to /var/lib/weft only
# (StateDirectory=weft): change the unit too if you move it.
data_dir = "/var/lib/weft"

# Admin API unix socket; the CLI finds it here (or via -socket,
# $WEFT_SOCKET). The unit makes /run/weft (RuntimeDirectory=weft).
socket = "/run/weft/weft.sock"

# IP address to listen on for gossip, RPC and Raft. Default: "0.0.0.0".
# bind_addr = "192.168.50.21"

# IP address other agents reach this one at. Default: bind_addr; if that is
# unspecified (0.0.0.0 or ::), the host's first private IPv4.
# advertise_addr = "192.168.50.21"

# Mesh DNS domain and SPIFFE trust domain. The same on every host of a
# cluster. Default: "weft.internal".
# domain = "weft.internal"

# Underlay ports, all different. Open them between the hosts of the fleet.
# ports {
#   gossip = 7946   # TCP and UDP
#   rpc    = 7947   # TCP, TLS; also the port of a join address given without one
#   raft   = 7948   # TCP, mutual TLS; servers only
# }

# Tags for policy selectors (tag:web). Default: [].
# tags = ["web", "prod"]

# ---------------------------------------------------------------------- role

# Run as a Raft voter and CA. 3 or 5 servers per cluster. Default: false.
# server = true

# Create a new cluster: on the first server only, once. Requires
# server = true; excludes a join block. Default: false.
# bootstrap = true

# Join an existing cluster at start, if this agent has no identity yet (once
# joined, the identity in data_dir is used and this block is ignored). The
# same as running `weft join -token T ADDR...`. The token is a secret: this
# file is readable by root and the weft group only.
# join {
#   token     = "weft1...."     # from `weft token create` on a server
#   addresses = ["192.168.50.11", "192.168.50.12:7947"]   # host or host:port
# }

# ---------------------------------------------------------------------- logs

# One of debug, info, warn, error.
log_level = "info"

# One of text, json. Default: "text" (journald adds the time stamps).
# log_format = "json"

# ------------------------------------------------------------------ services

# Services this host offers, one labelled block each (the label is a DNS
# label). A later file changes a service key by key.
# service "postgres" {
#   port = 5432                 # required, 1-65535
#   tags = ["primary"]          # [a-z0-9][a-z0-9_-]*; default []
#
#   # Health check: exactly one of tcp and http. The service passes while
#   # its check does.
#   check {
#     tcp      = "127.0.0.1:5432"                 # must accept a connection
#     # http   = "http://127.0.0.1:8008/health"   # must answer 2xx
#     interval = "10s"          # default 10s, at least 100ms
#     timeout  = "2s"           # default 2s, less than interval
#   }
#
#   # The local user that may fetch this service's identity (SVID).
#   # Parsed and validated; not used yet.
#   identity {
#     uid = 1000                # required in this block
#   }
#
#   # A local listener that forwards to another mesh service over mutual
#   # TLS. Parsed and validated; not used yet.
#   upstream "backup" {
#     listen = "127.0.0.1:15433"   # required
#   }
# }

# ----------------------------------------------------------------------- dns

# The agent's DNS server for the mesh domain.
# dns {
#   enabled    = true                  # default true
#   listen     = ["127.0.0.1:8600"]    # ip:port, UDP and TCP; default shown
#   domain     = "weft.internal"       # default: domain
#   upstreams  = ["1.1.1.1", "9.9.9.9:53"]   # other names; default [] (REFUSED)
#   allow_from = ["192.168.50.0/24"]   # besides loopback; default []
#   ttl        = "5s"                  # whole seconds, 0s-1h; default 5s
#   resolved   = true                  # split DNS through systemd-resolved; default false
# }

# ------------------------------------------------------------------- metrics

# Prometheus endpoint. Parsed and validated; not used yet. Default: off.
# metrics {
#   listen = "127.0.0.1:9436"
# }
