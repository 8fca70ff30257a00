// weft status page: polls /v1/mesh every 2 s and renders it. Every value
// from the agent is set as text (never as HTML): names, rule names and
// "applied by" are whatever operators typed.
"use strict";

(function () {
  const POLL_MS = 2000;
  const TABLE_MAX = 500; // rows of the reachability table before it is cut
  const SVG = "http://www.w3.org/2000/svg";
  const PALETTE = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#7c3aed", "#6b7280"];

  let last = null;       // the last view received
  let graphKey = "";     // what the drawn graph was made from

  // el builds an element; children are nodes or strings (set as text).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }
  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG, tag);
    setAttrs(e, attrs);
    append(e, children);
    return e;
  }
  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "text") e.textContent = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
  }
  function append(e, children) {
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
  }
  function pill(text, cls, title) { return el("span", { class: "pill " + cls, title: title }, text); }
  function $(id) { return document.getElementById(id); }

  function ago(seconds) {
    if (seconds === null || seconds === undefined || seconds < 0) return "never";
    if (seconds < 1) return "just now";
    if (seconds < 90) return Math.round(seconds) + " s ago";
    if (seconds < 5400) return Math.round(seconds / 60) + " min ago";
    if (seconds < 172800) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " d ago";
  }
  function bytes(n) {
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i === 0 ? n : n.toFixed(1)) + " " + units[i];
  }
  // when formats a time as local "YYYY-MM-DD HH:MM:SS".
  function when(iso) {
    const d = new Date(iso);
    if (isNaN(d)) return iso;
    const p = n => String(n).padStart(2, "0");
    return d.getFullYear() + "-" + p(d.getMonth() + 1) + "-" + p(d.getDate()) + " " +
      p(d.getHours()) + ":" + p(d.getMinutes()) + ":" + p(d.getSeconds());
  }
  function since(iso, now) { return ago((new Date(now) - new Date(iso)) / 1000); }
  function statusClass(s) {
    return s === "alive" ? "ok" : s === "dead" ? "bad" : "unk";
  }
  function segColors(view) {
    const m = new Map();
    view.segments.forEach((s, i) => m.set(s.name, PALETTE[i % PALETTE.length]));
    return m;
  }

  function renderHeader(v) {
    const a = v.agent;
    $("domain").textContent = a.domain;
    const facts = [
      el("span", {}, "node ", el("b", {}, a.node)),
      el("span", {}, "role ", el("b", {}, a.role + (a.raft_state ? " (" + a.raft_state.toLowerCase() + ")" : ""))),
      el("span", {}, "leader ", el("b", {}, a.leader || "none")),
      el("span", {}, "state index ", el("b", {}, String(a.state_index))),
    ];
    const failing = a.checks.filter(c => !c.ok);
    facts.push(a.ready ? pill("ready", "ok") :
      pill("not ready: " + failing.map(c => c.name).join(", "), "bad", failing.map(c => c.name + ": " + c.reason).join("\n")));
    $("agent").replaceChildren(...facts);
    $("updated").textContent = "updated " + when(v.generated_at).slice(11) + " · weft " + a.version;
  }

  function renderPolicy(v) {
    const p = v.policy;
    const box = $("policy");
    if (!p) {
      box.replaceChildren(el("span", { class: "label" }, "Policy"), el("span", { class: "muted" }, "none applied: no host may reach another"));
      return;
    }
    const n = v.members.length;
    const all = p.applied_on === n;
    box.replaceChildren(
      el("span", { class: "label" }, "Policy v" + p.version),
      el("span", {}, el("code", {}, p.filename)),
      el("span", {}, "applied by ", el("b", {}, p.applied_by || "unknown"), " at " + when(p.applied_at),
        el("span", { class: "muted" }, " (" + since(p.applied_at, v.generated_at) + ")")),
      pill("enforced on " + p.applied_on + " of " + n + " hosts", all ? "ok" : "warn",
        all ? "" : "hosts still on another version: " + v.members.filter(m => m.policy_version !== p.version).map(m => m.name).join(", ")),
    );
  }

  function renderMembers(v) {
    const pv = v.policy ? v.policy.version : 0;
    $("members-count").textContent = v.members.length + (v.members.length === 1 ? " host" : " hosts");
    const rows = v.members.map(m => {
      const lag = v.agent.state_index - m.state_index;
      let policy;
      if (m.policy_version === 0) policy = pill(pv ? "none" : "—", pv ? "warn" : "unk", "no policy enforced on this host");
      else if (m.policy_version === pv) policy = pill("v" + m.policy_version, "ok");
      else policy = pill("v" + m.policy_version, "warn", "the applied policy is v" + pv);
      return el("tr", { "data-member": m.name },
        el("td", {}, el("b", {}, m.name), m.self ? el("span", { class: "self", title: "the agent serving this page" }, "this agent") : null),
        el("td", {}, m.role),
        el("td", { class: "mono" }, m.addr),
        el("td", {}, pill(m.status, statusClass(m.status))),
        el("td", { class: "num", title: lag > 0 ? lag + " behind this agent" : "" }, String(m.state_index), lag > 0 ? el("span", { class: "muted" }, " (−" + lag + ")") : null),
        el("td", {}, policy),
        el("td", { class: "wrap" }, m.failing.length ? m.failing.map(f => pill(f, "bad", "service check failing")) : el("span", { class: "muted" }, "none")),
        el("td", { class: "wrap" }, m.tags.map(t => el("span", { class: "tag" }, t))),
      );
    });
    $("members-body").replaceChildren(el("table", {},
      el("thead", {}, el("tr", {}, ["Name", "Role", "Address", "Gossip", "State index", "Policy", "Failing checks", "Tags"]
        .map(h => el("th", { scope: "col", class: h === "State index" ? "num" : null }, h)))),
      el("tbody", {}, rows)));
  }

  function renderSegments(v, colors) {
    $("segments-count").textContent = v.segments.length ? String(v.segments.length) : "";
    if (!v.segments.length) {
      $("segments-body").replaceChildren(el("p", { class: "note" }, v.policy ? "The policy defines no segment." : "No policy applied yet."));
      return;
    }
    const blocks = v.segments.map(s => el("div", { "data-segment": s.name },
      el("h3", {},
        el("span", { class: "chip", "aria-hidden": "true", "data-color": colors.get(s.name) }),
        s.name,
        el("span", { class: "muted mono" }, s.cidr + " · udp/" + s.port),
        el("span", { class: "muted" }, "intra " + s.intra + " · members " + (s.members.join(", ") || "none"))),
      s.hosts.length ? el("table", {},
        el("thead", {}, el("tr", {}, ["Host", "Role", "Overlay address"].map(h => el("th", { scope: "col" }, h)))),
        el("tbody", {}, s.hosts.map(h => el("tr", { "data-host": h.name },
          el("td", {}, h.name),
          el("td", {}, h.role === "guest" ? pill("guest", "unk", "reaches some members through a rule") : "member"),
          el("td", { class: "mono" }, h.addr || el("span", { class: "muted" }, "not allocated yet")))))) :
        el("p", { class: "note" }, "No host in this segment.")));
    $("segments-body").replaceChildren(...blocks);
    paintChips($("segments-body"));
  }

  // paintChips colors the segment chips through the CSSOM (allowed by the
  // page's CSP, unlike style attributes in markup).
  function paintChips(root) {
    for (const c of root.querySelectorAll(".chip[data-color]")) c.style.background = c.getAttribute("data-color");
  }

  function renderPeers(v) {
    const d = v.dataplane;
    const body = $("peers-body");
    $("peers-h").firstChild.textContent = "WireGuard peers on " + v.agent.node + " ";
    if (!d.available) {
      $("peers-count").textContent = "";
      body.replaceChildren(el("p", { class: "note" }, pill("dataplane unavailable", "bad"), " ", d.reason || ""));
      return;
    }
    const rows = [];
    let n = 0;
    for (const s of d.segments) {
      for (const p of s.peers) {
        n++;
        const age = p.handshake_age_seconds;
        const cls = age === null ? "unk" : age < 180 ? "ok" : age < 300 ? "warn" : "bad";
        rows.push(el("tr", { "data-peer": p.name },
          el("td", {}, s.name, el("span", { class: "muted mono" }, " " + s.interface)),
          el("td", {}, p.name || el("span", { class: "muted" }, "unnamed")),
          el("td", { class: "mono" }, p.endpoint || el("span", { class: "muted" }, "unknown")),
          el("td", { class: "mono" }, p.allowed_ips.join(", ")),
          el("td", {}, pill(ago(age), cls, p.last_handshake ? when(p.last_handshake) : "no handshake yet")),
          el("td", { class: "num" }, bytes(p.rx_bytes)),
          el("td", { class: "num" }, bytes(p.tx_bytes))));
      }
    }
    $("peers-count").textContent = n + (n === 1 ? " peer" : " peers") + " in " + d.segments.length + (d.segments.length === 1 ? " interface" : " interfaces");
    const parts = [];
    if (d.reason) parts.push(el("p", { class: "note" }, pill("partial", "warn"), " ", d.reason));
    const ifaces = d.segments.map(s => el("span", { class: "tag mono" }, s.interface + " " + (s.address || "?") + " (" + s.role + ", :" + s.listen_port + ")"));
    if (ifaces.length) parts.push(el("p", { class: "note" }, "Interfaces: ", ifaces));
    if (rows.length) {
      parts.push(el("table", {},
        el("thead", {}, el("tr", {}, ["Segment", "Peer", "Endpoint", "Allowed IPs", "Handshake", "Rx", "Tx"]
          .map(h => el("th", { scope: "col", class: h === "Rx" || h === "Tx" ? "num" : null }, h)))),
        el("tbody", {}, rows)));
    } else {
      parts.push(el("p", { class: "note" }, d.segments.length ? "No peers yet." : "This host has no WireGuard interface."));
    }
    body.replaceChildren(...parts);
  }

  function ruleText(r) { return r.name + " " + r.ports.join(" ") + (r.action === "deny" ? " (denied)" : ""); }

  function renderReach(v, colors) {
    const r = v.reach;
    const key = JSON.stringify([r, v.members.map(m => [m.name, m.status, m.self]), [...colors]]);
    if (key === graphKey) return; // unchanged: keep the drawing (and any hover)
    graphKey = key;
    $("reach-count").textContent = r.computed ? r.edges.length + (r.edges.length === 1 ? " edge" : " edges") : "";
    const parts = [];
    if (!r.computed) {
      parts.push(el("p", { class: "note", "data-reach": "omitted" }, r.reason));
      if (r.hosts > r.limit) {
        $("reach-body").replaceChildren(...parts);
        return;
      }
    } else if (r.reason) {
      parts.push(el("p", { class: "note" }, pill("partial", "warn"), " " + r.reason));
    }
    parts.push(drawGraph(v, colors));
    const onEdges = new Set(r.edges.map(e => e.segment));
    const used = [...colors.keys()].filter(s => onEdges.has(s));
    if (used.length) {
      parts.push(el("div", { class: "legend", "aria-hidden": "true" },
        used.map(s => el("span", {}, el("span", { class: "chip", "data-color": colors.get(s) }), s)),
        el("span", {}, "→ may open flows to")));
    }
    if (r.computed) {
      const shown = r.edges.slice(0, TABLE_MAX);
      const table = el("table", { "data-reach-table": "" },
        el("caption", {}, "Who may reach whom, as a table" + (r.edges.length > TABLE_MAX ? " (first " + TABLE_MAX + " of " + r.edges.length + ")" : "")),
        el("thead", {}, el("tr", {}, ["From", "To", "Segment", "Address", "Admitted by"].map(h => el("th", { scope: "col" }, h)))),
        el("tbody", {}, shown.map(e => el("tr", { "data-from": e.from, "data-to": e.to },
          el("td", {}, e.from), el("td", {}, e.to),
          el("td", {}, el("span", { class: "chip", "data-color": colors.get(e.segment), "aria-hidden": "true" }), " ", e.segment),
          el("td", { class: "mono" }, e.addr),
          el("td", { class: "wrap mono" }, e.rules.length ? e.rules.map(ruleText).join("; ") : el("span", { class: "muted" }, "—"))))));
      const wrapped = r.edges.length <= 30 ? el("div", { class: "scroll" }, table) :
        el("details", {}, el("summary", {}, "Show the " + r.edges.length + " edges as a table"), el("div", { class: "scroll" }, table));
      parts.push(r.edges.length ? wrapped :
        el("p", { class: "note" }, v.policy ? "No host may reach another yet (hosts appear once their keys are registered)." : ""));
    }
    $("reach-body").replaceChildren(...parts);
    paintChips($("reach-body"));
  }

  // drawGraph puts the hosts on a circle and draws one arrow per edge,
  // curved so that a→b and b→a do not overlap.
  function drawGraph(v, colors) {
    const r = v.reach;
    const names = v.members.map(m => m.name);
    const byName = new Map(v.members.map(m => [m.name, m]));
    const n = names.length;
    // Many hosts: a wider drawing with radial labels, smaller nodes.
    const many = n > 12;
    const W = many ? 520 : 480, H = many ? 520 : 400, cx = W / 2, cy = H / 2;
    const NR = n > 60 ? 4 : n > 24 ? 7 : 11;
    const longest = Math.max(0, ...names.map(s => s.length));
    const R = n <= 1 ? 0 : many ? Math.max(120, cx - NR - 14 - Math.min(longest, 18) * (n > 30 ? 6 : 8)) : 140;
    const pos = new Map();
    names.forEach((name, i) => {
      const a = -Math.PI / 2 + (2 * Math.PI * i) / Math.max(n, 1);
      pos.set(name, { x: cx + R * Math.cos(a), y: cy + R * Math.sin(a), a: a });
    });
    const g = svg("svg", { id: "graph", class: n > 30 ? "dense" : null, viewBox: "0 0 " + W + " " + H, role: "img", "aria-labelledby": "graph-title graph-desc" },
      svg("title", { id: "graph-title" }, "Reachability graph"),
      svg("desc", { id: "graph-desc" }, n + " hosts on a circle; an arrow from A to B means A may open flows to B, colored by the segment it goes through. The table below lists the same."));
    const defs = svg("defs", {});
    colors.forEach((c, s) => defs.append(svg("marker", {
      id: "arrow-" + [...colors.keys()].indexOf(s), viewBox: "0 0 10 10", refX: 9, refY: 5,
      markerWidth: 9, markerHeight: 9, orient: "auto-start-reverse", markerUnits: "userSpaceOnUse",
    }, svg("path", { d: "M0,0 L10,5 L0,10 z", fill: c }))));
    g.append(defs);
    const segIndex = new Map([...colors.keys()].map((s, i) => [s, i]));
    const faint = r.edges.length > 150; // a hairball: let the nodes show through
    const labelled = n <= 64;
    const edges = svg("g", { class: "edges" });
    for (const e of r.edges) {
      const p = pos.get(e.from), q = pos.get(e.to);
      if (!p || !q) continue;
      const dx = q.x - p.x, dy = q.y - p.y, len = Math.hypot(dx, dy) || 1;
      const ux = dx / len, uy = dy / len;
      const bend = Math.min(40, len * 0.15);
      // control point to the right of the direction of travel
      const mx = (p.x + q.x) / 2 - uy * bend, my = (p.y + q.y) / 2 + ux * bend;
      const sx = mx - p.x, sy = my - p.y, sl = Math.hypot(sx, sy) || 1;
      const tx = q.x - mx, ty = q.y - my, tl = Math.hypot(tx, ty) || 1;
      const gap = NR + 3;
      const x1 = p.x + sx / sl * gap, y1 = p.y + sy / sl * gap;
      const x2 = q.x - tx / tl * gap, y2 = q.y - ty / tl * gap;
      const color = colors.get(e.segment) || "#6b7280";
      edges.append(svg("path", {
        class: "edge", "data-from": e.from, "data-to": e.to, "data-segment": e.segment,
        d: "M" + x1.toFixed(1) + "," + y1.toFixed(1) + " Q" + mx.toFixed(1) + "," + my.toFixed(1) + " " + x2.toFixed(1) + "," + y2.toFixed(1),
        stroke: color, "marker-end": segIndex.has(e.segment) ? "url(#arrow-" + segIndex.get(e.segment) + ")" : null,
        "stroke-opacity": faint ? 0.35 : null,
      }, svg("title", {}, e.from + " → " + e.to + " (" + e.addr + ")\nsegment " + e.segment +
        (e.rules.length ? "\n" + e.rules.map(ruleText).join("\n") : ""))));
    }
    g.append(edges);
    const nodes = svg("g", { class: "nodes" });
    for (const name of names) {
      const m = byName.get(name), p = pos.get(name);
      const fill = m.status === "alive" ? "#2da44e" : m.status === "dead" ? "#cf222e" : "#8c959f";
      const out = r.edges.filter(e => e.from === name).length, inn = r.edges.filter(e => e.to === name).length;
      const node = svg("g", { class: "node" + (m.self ? " self" : ""), "data-host": name },
        svg("title", {}, name + " (" + m.role + ", " + m.status + ")\nreaches " + out + ", reached by " + inn),
        m.self ? svg("circle", { class: "ring", cx: p.x.toFixed(1), cy: p.y.toFixed(1), r: NR + 4 }) : null,
        svg("circle", { cx: p.x.toFixed(1), cy: p.y.toFixed(1), r: NR, fill: fill }));
      if (labelled || m.self) node.append(label(name, p, n, NR));
      nodes.append(node);
    }
    g.append(nodes);
    if (!n) g.append(svg("text", { class: "empty", x: cx, y: cy, "text-anchor": "middle" }, "no hosts"));
    return g;
  }

  // label places a host's name outside the circle, away from the center:
  // level for a few hosts, along the radius for many (so that neighbors
  // do not overlap).
  function label(name, p, n, NR) {
    if (n <= 1) return svg("text", { x: p.x.toFixed(1), y: (p.y + NR + 18).toFixed(1), "text-anchor": "middle" }, name);
    const c = Math.cos(p.a), s = Math.sin(p.a);
    const lx = p.x + c * (NR + 6), ly = p.y + s * (NR + 6);
    if (n > 12) {
      const left = c < -1e-9;
      const deg = p.a * 180 / Math.PI + (left ? 180 : 0);
      return svg("text", { x: lx.toFixed(1), y: ly.toFixed(1), dy: "0.35em", "text-anchor": left ? "end" : "start",
        transform: "rotate(" + deg.toFixed(1) + " " + lx.toFixed(1) + " " + ly.toFixed(1) + ")" }, name);
    }
    const anchor = Math.abs(c) < 0.15 ? "middle" : c > 0 ? "start" : "end";
    const dy = s > 0.5 ? 12 : s < -0.5 ? -4 : 4;
    return svg("text", { x: lx.toFixed(1), y: (ly + dy).toFixed(1), "text-anchor": anchor }, name);
  }

  function render(v) {
    last = v;
    const colors = segColors(v);
    renderHeader(v);
    renderPolicy(v);
    renderMembers(v);
    renderSegments(v, colors);
    renderPeers(v);
    renderReach(v, colors);
  }

  function poll() {
    fetch("/v1/mesh", { cache: "no-store", credentials: "same-origin" })
      .then(resp => {
        if (!resp.ok) throw new Error("HTTP " + resp.status);
        return resp.json();
      })
      .then(v => {
        $("banner").hidden = true;
        render(v);
      })
      .catch(err => {
        const b = $("banner");
        b.textContent = "Cannot reach the agent (" + err.message + ")" +
          (last ? "; showing what it said at " + new Date(last.generated_at).toLocaleTimeString() : "") + ". Retrying every 2 s.";
        b.hidden = false;
      })
      .finally(() => setTimeout(poll, POLL_MS));
  }

  poll();
})();
