// Draws the status page from its JSON (embedded at first, then fetched from status.json every few
// seconds) without reloading the page. Text goes in with textContent only: names in the policy and
// request ids are shown, never interpreted as HTML. Charts are inline SVG; nothing is loaded from
// anywhere but this listener.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const seconds = Number(new URLSearchParams(location.search).get("refresh"));
  const REFRESH_MS = (seconds >= 1 ? seconds : 5) * 1000;

  function el(tag, text, cls) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, String(v));
    return node;
  }
  function byId(id) { return document.getElementById(id); }
  function duration(s) {
    if (s === null || s === undefined) return "–";
    return s < 1 ? Math.round(s * 1000) + " ms" : s.toFixed(2) + " s";
  }
  // Per-minute buckets drain continuously, so levels are fractional: "used" rounds up and "left"
  // down, as the x-ratelimit-remaining header does.
  function amount(n, unit, round) {
    if (n === null || n === undefined) return "–";
    if (unit === "spend") return "$" + n.toFixed(4);
    return (round || Math.floor)(n).toLocaleString("en-US");
  }
  function fill(tableId, rows) {
    const body = byId(tableId).tBodies[0];
    body.replaceChildren(...rows);
    if (!rows.length) {
      const tr = el("tr");
      const td = el("td", "none", "meta");
      td.colSpan = byId(tableId).tHead.rows[0].cells.length;
      tr.append(td);
      body.append(tr);
    }
  }
  function row(cells) {
    const tr = el("tr");
    for (const c of cells) tr.append(c instanceof Node ? wrap(c) : el("td", c));
    return tr;
  }
  function wrap(node) { const td = el("td"); td.append(node); return td; }

  function chart(title, series, format, bars) {
    const w = 300, h = 96, top = 16, bottom = 14, n = series[0].values.length;
    const max = Math.max(0, ...series.flatMap((s) => s.values.filter((v) => v !== null)));
    const root = svg("svg", { width: w, height: h, viewBox: `0 0 ${w} ${h}`, class: "chart", role: "img" });
    root.append(svg("title"));
    root.lastChild.textContent = title;
    const label = svg("text", { x: 4, y: 11 });
    label.textContent = `${title} (max ${format(max)})`;
    root.append(label);
    const y = (v) => h - bottom - (max > 0 ? (v / max) * (h - top - bottom) : 0);
    const step = w / n;
    series.forEach((s, si) => {
      if (bars) {
        s.values.forEach((v, i) => {
          if (!v) return;
          root.append(svg("rect", { x: i * step + 1, y: y(v), width: step - 2, height: h - bottom - y(v),
                                    class: "bar " + s.cls }));
        });
      } else {
        // A line through the minutes that had traffic, and a dot on each (one minute alone shows too).
        const points = s.values.map((v, i) => (v === null ? null : [(i + 0.5) * step, y(v)])).filter((p) => p);
        if (points.length) root.append(svg("polyline", { points: points.map((p) => p.join(",")).join(" "),
                                                         class: "line " + s.cls }));
        for (const [cx, cy] of points) root.append(svg("circle", { cx, cy, r: 2, class: "dot " + s.cls }));
      }
      const key = svg("text", { x: w - 4 - (series.length - si - 1) * 60, y: 11, "text-anchor": "end" });
      key.textContent = s.name;
      root.append(key);
    });
    const left = svg("text", { x: 4, y: h - 2 }), right = svg("text", { x: w - 4, y: h - 2, "text-anchor": "end" });
    left.textContent = "-15 min";
    right.textContent = "now";
    root.append(left, right);
    return root;
  }

  function meter(used, cap) {
    const ratio = cap > 0 && used !== null ? Math.min(1, used / cap) : 0;
    const root = svg("svg", { width: 80, height: 8, class: "meter" });
    root.append(svg("rect", { x: 0, y: 0, width: Math.max(ratio * 80, 0), height: 8, class: ratio >= 0.9 ? "high" : "" }));
    return root;
  }

  function renderPolicy(p) {
    byId("policy-version").textContent = p.version.slice(0, 12);
    byId("policy-version").title = p.version;
    byId("policy-loaded").textContent = p.loaded_at;
    const box = byId("policy-rejected");
    box.hidden = !p.rejected_version;
    if (p.rejected_version) {
      byId("rejected-version").textContent = p.rejected_version.slice(0, 12);
      byId("rejected-at").textContent = p.rejected_at;
      byId("rejected-errors").replaceChildren(...p.rejected_errors.map((e) => el("li", e, "mono")));
    }
  }

  function renderTraffic(t) {
    byId("total-requests").textContent = t.requests;
    byId("total-denied").textContent = t.denied;
    byId("latency").textContent = `${duration(t.latency_p50)} / ${duration(t.latency_p99)}`;
    byId("ttft").textContent = `${duration(t.ttft_p50)} / ${duration(t.ttft_p99)}`;
    const codes = Object.entries(t.denials).sort((a, b) => b[1] - a[1]);
    byId("denials-by-code").textContent = codes.length ? codes.map(([c, n]) => `${c} ${n}`).join(", ") : "none";
    const m = t.minutes, count = (v) => String(v);
    byId("charts").replaceChildren(
      chart("requests / min", [{ name: "all", cls: "", values: m.map((p) => p.requests) },
                               { name: "denied", cls: "denied", values: m.map((p) => p.denied) }], count, true),
      chart("latency", [{ name: "p50", cls: "p50", values: m.map((p) => p.latency_p50) },
                        { name: "p99", cls: "p99", values: m.map((p) => p.latency_p99) }], duration, false),
      chart("time to first token", [{ name: "p50", cls: "p50", values: m.map((p) => p.ttft_p50) },
                                    { name: "p99", cls: "p99", values: m.map((p) => p.ttft_p99) }], duration, false));
  }

  function renderModels(models) {
    const rows = [];
    for (const m of models) {
      for (const d of m.deployments) {
        rows.push(row([m.key, m.category, d.name, d.provider, `${d.priority} / ${d.weight}`,
                       el("span", d.breaker, "state-" + d.breaker),
                       d.breaker === "open" ? Math.ceil(d.cooldown_left) + " s" : "–"]));
      }
    }
    fill("models-table", rows);
  }

  function renderTokens(tokens, error) {
    const note = byId("quota-error");
    note.hidden = !error;
    note.textContent = error ? "Quota store unreadable: " + error : "";
    fill("tokens-table", tokens.map((t) => {
      const list = el("ul", null, "limits");
      for (const l of t.limits) {
        const li = el("li", null, "limit");
        li.dataset.limit = l.limit;
        li.dataset.scope = l.scope;
        li.append(meter(l.used, l.cap), `${l.label} (${l.limit}, ${l.scope}${l.shadow ? ", shadow" : ""}): `,
                  el("b", amount(l.used, l.unit, Math.ceil), "used"), " used · ", el("span", amount(l.left, l.unit), "left"),
                  ` left of ${amount(l.cap, l.unit)}` + (l.resets_at ? ` · resets ${l.resets_at}` : ""));
        list.append(li);
      }
      if (!t.limits.length) list.append(el("li", "no limit applies", "meta"));
      const tr = row([el("b", t.name), t.team || "–", t.models ? t.models.join(", ") : "all",
                      t.expires ? t.expires + (t.expired ? " (expired)" : "") : "never", list]);
      tr.dataset.token = t.name;
      return tr;
    }));
  }

  function renderGuardrails(guardrails) {
    fill("guardrails-table", guardrails.map((g) => row([g.key, g.type, g.action, g.direction,
                                                         g.default_on ? "yes" : "no", String(g.findings_last_hour)])));
  }

  function renderDenied(denied) {
    fill("denied-table", denied.map((d) => {
      const tr = row([d.time, el("code", d.request_id), d.token || "–", d.model || "–", String(d.status), d.code || "–"]);
      tr.dataset.requestId = d.request_id;
      return tr;
    }));
  }

  function render(s) {
    byId("generated-at").textContent = s.generated_at;
    byId("quota-store").textContent = s.quota_store;
    renderPolicy(s.policy);
    renderTraffic(s.traffic);
    renderModels(s.models);
    renderTokens(s.tokens, s.quota_store_error);
    renderGuardrails(s.guardrails);
    renderDenied(s.denied);
    document.body.dataset.renders = String(Number(document.body.dataset.renders || 0) + 1);
  }

  async function refresh() {
    try {
      const response = await fetch("status.json", { cache: "no-store", credentials: "same-origin" });
      if (!response.ok) throw new Error("HTTP " + response.status);
      render(await response.json());
      byId("refresh-state").textContent = "";
    } catch (error) {
      byId("refresh-state").textContent = "· refresh failed (" + error.message + "); retrying";
    } finally {
      setTimeout(refresh, REFRESH_MS);
    }
  }

  render(JSON.parse(byId("initial-status").textContent));
  setTimeout(refresh, REFRESH_MS);
})();
