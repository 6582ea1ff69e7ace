// The Sluice dashboard: one server-sent event a second (events), drawn without a framework or a build step.
(() => {
  const $ = (id) => document.getElementById(id);
  const colors = ['#0b6bcb', '#1a7f37', '#b42318', '#9a6700', '#6941c6', '#0e7490', '#c11574', '#475467'];
  const escape = (s) => String(s ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  const time = (t) => new Date(t).toLocaleTimeString();
  const bytes = (n) => n < 1024 ? `${n} B` : n < 1048576 ? `${(n / 1024).toFixed(1)} KiB` : `${(n / 1048576).toFixed(1)} MiB`;
  const age = (s) => s < 60 ? `${Math.round(s)} s` : s < 3600 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`;
  const rows = (table, html) => { table.querySelector('tbody').innerHTML = html || `<tr><td colspan="9" class="empty">none</td></tr>`; };
  let tapOn = false;
  let latest = null;
  // The node whose view is shown: this node's through the event stream, another's by polling snapshot?node=.
  let localNode = null;
  let shownNode = null;

  // Four equal steps of 1, 2, 2.5 or 5 times a power of ten, so that low rates get fractional labels, not "1, 1, 1, 0, 0".
  function axis(peak) {
    const raw = (peak > 0 ? peak : 4) / 4;
    const magnitude = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((s) => s >= raw * (1 - 1e-9));
    const decimals = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (Math.abs(step / magnitude - 2.5) < 1e-9 ? 1 : 0));
    const labels = [4, 3, 2, 1, 0].map((i) => String(Number((step * i).toFixed(decimals))));
    return { max: step * 4, labels };
  }

  function drawChart(routes) {
    const canvas = $('chart');
    const ratio = window.devicePixelRatio || 1;
    const width = canvas.clientWidth, height = canvas.clientHeight;
    canvas.width = width * ratio; canvas.height = height * ratio;
    const g = canvas.getContext('2d');
    g.scale(ratio, ratio);
    g.clearRect(0, 0, width, height);
    const series = [];
    routes.forEach((route) => route.rates.forEach((rate) => series.push({ name: `${route.route} ${rate.direction}`, points: rate.history })));
    const { max, labels } = axis(Math.max(0, ...series.flatMap((s) => s.points)));
    const left = 44, bottom = height - 22, top = 10, span = 120;
    g.strokeStyle = '#e3e6ee'; g.fillStyle = '#6b7385'; g.font = '11px system-ui'; g.lineWidth = 1;
    labels.forEach((label, i) => {
      const y = top + (bottom - top) * i / 4;
      g.beginPath(); g.moveTo(left, y); g.lineTo(width, y); g.stroke();
      g.fillText(label, 4, y + 4);
    });
    canvas.setAttribute('aria-label', `messages per second over the last two minutes; axis ${labels.join(', ')}`);
    g.fillText('-2 min', left, height - 6); g.fillText('now', width - 26, height - 6);
    series.forEach((s, index) => {
      g.strokeStyle = colors[index % colors.length]; g.lineWidth = 2; g.beginPath();
      const offset = span - s.points.length;
      s.points.forEach((value, i) => {
        const x = left + (width - left) * (offset + i) / (span - 1);
        const y = bottom - (bottom - top) * value / max;
        if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
      });
      g.stroke();
    });
    $('legend').innerHTML = series.map((s, i) => `<span><i style="background:${colors[i % colors.length]}"></i>${escape(s.name)}</span>`).join('')
      || '<span class="empty">no messages yet</span>';
  }

  function render(snapshot) {
    latest = snapshot;
    $('connections').textContent = snapshot.connections;
    $('capacity').textContent = `of at most ${snapshot.maxConnections}`;
    const sum = (direction) => snapshot.routes.flatMap((r) => r.rates).filter((r) => r.direction === direction).reduce((a, r) => a + r.rate, 0);
    $('rate-in').textContent = sum('inbound').toFixed(0);
    $('rate-out').textContent = sum('outbound').toFixed(0);
    $('stopped').textContent = snapshot.outcomes.reduce((a, o) => a + o.count, 0);
    drawChart(snapshot.routes);

    rows($('outcomes'), snapshot.outcomes.map((o) =>
      `<tr><td><code>${escape(o.route)}</code></td><td><code>${escape(o.policy)}</code></td><td>${escape(o.direction)}</td><td><span class="badge ${escape(o.outcome)}">${escape(o.outcome)}</span></td><td class="num">${o.count}</td></tr>`).join(''));
    $('recent').innerHTML = snapshot.recent.map((e) =>
      `<li><time>${time(e.at)}</time><span class="badge ${escape(e.kind)}">${escape(e.kind)}</span> <code>${escape(e.route)}</code> ${e.policy ? `by <code>${escape(e.policy)}</code>` : ''} ${e.direction ? escape(e.direction) : ''} ${e.reason ? '— ' + escape(e.reason) : ''}</li>`).join('')
      || '<li class="empty">nothing stopped yet</li>';

    rows($('backends'), snapshot.backends.map((b) =>
      `<tr><td><code>${escape(b.route)}</code></td><td><code>${escape(b.target)}</code></td><td><span class="badge ${b.status}">${b.status}</span>${b.lastFailure ? ' ' + escape(b.lastFailure) : ''}</td><td>${b.lastConnectMs != null ? b.lastConnectMs.toFixed(1) + ' ms' : '–'}</td></tr>`).join(''));
    rows($('pools'), snapshot.pools.flatMap((p) => p.targets.map((t) =>
      `<tr><td><code>${escape(p.route)}</code></td><td><code>${escape(t.target)}</code></td><td><span class="badge ${t.healthy ? 'healthy' : 'unhealthy'}">${t.healthy ? 'healthy' : 'unhealthy'}</span>${t.lastError ? ' ' + escape(t.lastError) : ''}</td>` +
      `<td class="num">${t.openConnections}</td><td>${t.lastCheckAt ? time(t.lastCheckAt) : '–'}</td></tr>`)).join(''));
    rows($('topics'), snapshot.topics.map((t) => `<tr><td><code>${escape(t.topic)}</code></td><td class="num">${t.subscribers}</td></tr>`).join(''));

    $('listed').textContent = snapshot.list.length < snapshot.connections ? `(newest ${snapshot.list.length} of ${snapshot.connections})` : '';
    rows($('list'), snapshot.list.map((c) =>
      `<tr data-id="${escape(c.id)}"><td><code>${escape(c.id)}</code></td><td>${escape(c.node)}</td><td><code>${escape(c.route)}</code></td><td>${escape(c.subject ?? '–')}</td><td>${age(c.ageSeconds)}</td>` +
      `<td>${c.inbound.messages} / ${bytes(c.inbound.bytes)}</td><td>${c.outbound.messages} / ${bytes(c.outbound.bytes)}</td>` +
      `<td><button class="close" data-close="${escape(c.id)}">Close</button></td></tr>`).join(''));

    const select = $('tap-route');
    const routes = snapshot.routes.map((r) => r.route);
    if (select.options.length !== routes.length) {
      select.innerHTML = routes.map((r) => `<option>${escape(r)}</option>`).join('');
    }
    tapOn = snapshot.tap.routes.includes(select.value);
    $('tap-toggle').textContent = tapOn ? 'Stop tap' : 'Start tap';
    $('tap-state').textContent = snapshot.tap.routes.length ? `tapping: ${snapshot.tap.routes.join(', ')}` : 'off';
    snapshot.tap.entries.forEach((e) => {
      const li = document.createElement('li');
      li.innerHTML = `<time>${time(e.at)}</time><code>${escape(e.route)}</code> ${e.direction} ${e.opcode} ${e.bytes} B <code>${escape(e.connectionId)}</code> ${escape(e.preview ?? '')}`;
      $('tap').prepend(li);
      while ($('tap').children.length > 100) $('tap').lastChild.remove();
    });
  }

  document.addEventListener('click', async (event) => {
    const id = event.target?.dataset?.close;
    if (!id) return;
    event.target.disabled = true;
    await fetch(`connections/${encodeURIComponent(id)}/close?code=1008&reason=${encodeURIComponent('closed from the dashboard')}`, { method: 'POST' });
  });

  $('tap-toggle').addEventListener('click', async () => {
    const route = $('tap-route').value;
    await fetch(`tap?route=${encodeURIComponent(route)}&enabled=${!tapOn}`, { method: 'POST' });
  });

  window.addEventListener('resize', () => latest && drawChart(latest.routes));

  // Cluster totals and the node picker, from the node registry (nodes), every two seconds.
  async function refreshNodes() {
    try {
      const response = await fetch('nodes');
      if (!response.ok) return;
      const cluster = await response.json();
      localNode = cluster.node;
      shownNode ??= localNode;
      $('cluster-connections').textContent = cluster.totals.connections;
      $('cluster-nodes').textContent = `connections on ${cluster.totals.nodes} node${cluster.totals.nodes === 1 ? '' : 's'}`;
      const picker = $('node-picker');
      const ids = cluster.nodes.map((n) => n.id);
      if ([...picker.options].map((o) => o.value).join() !== ids.join()) {
        picker.innerHTML = ids.map((id) => `<option value="${escape(id)}">${escape(id)}${id === localNode ? ' (this node)' : ''}</option>`).join('');
        picker.value = ids.includes(shownNode) ? shownNode : localNode;
      }
    } catch { /* the next round tries again */ }
  }

  async function refreshRemote() {
    if (!shownNode || shownNode === localNode) return;
    const response = await fetch(`snapshot?node=${encodeURIComponent(shownNode)}`);
    if (response.ok) {
      const snapshot = await response.json();
      snapshot.tap.entries = []; // the tap is this node's only
      render(snapshot);
      $('live-text').textContent = `${shownNode} (polled)`;
    } else {
      $('live-dot').className = 'dot';
      $('live-text').textContent = `${shownNode} does not answer`;
    }
  }

  $('node-picker').addEventListener('change', (event) => { shownNode = event.target.value; refreshRemote(); });
  refreshNodes();
  setInterval(refreshNodes, 2000);
  setInterval(() => refreshRemote().catch(() => {}), 1000);

  const events = new EventSource('events');
  events.onopen = () => { $('live-dot').className = 'dot on'; $('live-text').textContent = 'live'; };
  events.onerror = () => { $('live-dot').className = 'dot'; $('live-text').textContent = 'reconnecting…'; };
  events.onmessage = (message) => {
    if (shownNode && shownNode !== localNode) return;
    $('live-dot').className = 'dot on'; $('live-text').textContent = 'live';
    render(JSON.parse(message.data));
  };
})();
