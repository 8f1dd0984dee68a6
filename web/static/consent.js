// The OAuth consent page (/oauth/authorize): the answer is posted with the
// session's CSRF token in its header, as every write with the session
// cookie must be; the server answers where the browser goes next (the
// client's redirect URI, with a code or with access_denied).
const form = document.getElementById('consent');
const error = document.getElementById('consent-error');

form.addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const body = new URLSearchParams(new FormData(form));
  body.set('decision', ev.submitter && ev.submitter.value === 'allow' ? 'allow' : 'deny');
  for (const b of form.querySelectorAll('button')) b.disabled = true;
  try {
    const res = await fetch(form.action, {
      method: 'POST', credentials: 'same-origin',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded', 'X-CSRF-Token': form.dataset.csrf },
      body,
    });
    const out = await res.json();
    if (!res.ok || !out.redirect_to) throw new Error(out.detail || `HTTP ${res.status}`);
    window.location.assign(out.redirect_to);
  } catch (e) {
    error.textContent = `The answer could not be sent: ${e.message}`;
    for (const b of form.querySelectorAll('button')) b.disabled = false;
  }
});
