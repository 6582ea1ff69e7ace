// The Sluice demo page: a chat room through the gateway's /demo/{room} route. No framework, no build step.
(() => {
  const $ = (id) => document.getElementById(id);
  const name = $('name');
  name.value = 'guest-' + Math.floor(1000 + Math.random() * 9000);
  let socket = null;

  const setOnline = (online) => {
    $('status').textContent = online ? 'online' : 'offline';
    $('status').className = 'status ' + (online ? 'online' : 'offline');
    $('text').disabled = $('send').disabled = !online;
    document.querySelectorAll('[data-try]').forEach((b) => { b.disabled = !online; });
    $('connect').textContent = online ? 'Leave' : 'Join';
  };

  const addMessage = (cls, render) => {
    const li = document.createElement('li');
    li.className = cls;
    render(li);
    $('messages').appendChild(li);
    $('messages').scrollTop = $('messages').scrollHeight;
  };

  const system = (text) => addMessage('system', (li) => { li.textContent = text; });

  const outcome = (text, cls = '') => {
    const list = $('outcomes');
    list.querySelector('.empty')?.remove();
    const li = document.createElement('li');
    li.className = cls;
    li.innerHTML = text;
    list.prepend(li);
  };

  const escape = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));

  const receive = (event) => {
    let data;
    try { data = JSON.parse(event.data); } catch { system('(not JSON) ' + event.data); return; }
    if (data.error) {
      const e = data.error;
      outcome(`<b>${escape(e.policy)}</b> answered ${e.status}: ${escape(e.message)}`);
      return;
    }
    addMessage(data.user === name.value ? 'mine' : '', (li) => {
      li.innerHTML = `<span class="who">${escape(data.user)}</span>${escape(data.text)}` +
        (data.password !== undefined ? `<span class="masked">password: ${escape(data.password)}</span>` : '') +
        (data.gatewayMs !== undefined ? `<span class="meta">${data.gatewayMs} ms in the gateway</span>` : '');
    });
    if (data.password === '***' && data.user === name.value) {
      outcome('<b>json-redact</b> masked <code>/password</code>: the backend and the room saw <code>***</code>', 'info');
    }
  };

  const connect = () => {
    const room = encodeURIComponent($('room').value.trim() || 'lobby');
    const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
    socket = new WebSocket(`${scheme}://${location.host}/demo/${room}`);
    socket.onopen = () => { setOnline(true); system(`joined ${decodeURIComponent(room)} as ${name.value}`); };
    socket.onmessage = receive;
    socket.onclose = (e) => {
      setOnline(false);
      system(`left (close ${e.code}${e.reason ? ': ' + e.reason : ''})`);
      if (e.code !== 1000 && e.code !== 1005) outcome(`the connection closed with <b>${e.code}</b> ${escape(e.reason)}`);
      socket = null;
    };
    socket.onerror = () => system('the connection failed (is the gateway running?)');
  };

  const send = (payload) => socket && socket.readyState === WebSocket.OPEN && socket.send(JSON.stringify(payload));

  $('join').addEventListener('submit', (e) => {
    e.preventDefault();
    if (socket) socket.close(1000, 'left the room'); else connect();
  });

  $('composer').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('text').value.trim();
    if (!text) return;
    send({ user: name.value, text });
    $('text').value = '';
  });

  const tries = {
    password: () => send({ user: name.value, text: 'my password is below, oops', password: 'hunter2' }),
    oversized: () => send({ user: name.value, text: 'x'.repeat(2048) }),
    burst: () => { for (let i = 1; i <= 10; i++) send({ user: name.value, text: `burst message ${i} of 10` }); },
    invalid: () => send({ user: name.value, note: 'no text field here' }),
  };
  document.querySelectorAll('[data-try]').forEach((button) => button.addEventListener('click', () => tries[button.dataset.try]()));

  setOnline(false);
})();
