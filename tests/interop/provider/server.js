// An independent OpenID provider for interop tests: panva's oidc-provider (OpenID Certified),
// configured to look like Microsoft Entra ID v2.0. Nobody on this project wrote its protocol
// code, so it catches bugs our own built-in provider would share with the middleware.
//
//   node server.js CONFIG.json      (prints "listening PORT" once ready)
//
// CONFIG: { port, tenant, jwks: {keys: [private JWKs]}, clients: [...], users: [...] }.
// oidc-provider cannot serve an issuer with a path by itself, so a small http front strips
// "/<tenant>/v2.0" and sets req.originalUrl, the way a mounting framework would.
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import querystring from 'node:querystring';

import Provider from 'oidc-provider';

const config = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const origin = `http://127.0.0.1:${config.port}`;
const mount = `/${config.tenant}/v2.0`;
const issuer = `${origin}${mount}`;
const usersByEmail = new Map(config.users.map((u) => [u.email.toLowerCase(), u]));
const usersByOid = new Map(config.users.map((u) => [u.oid, u]));
const pairwiseSalt = crypto.randomBytes(16).toString('hex');

const provider = new Provider(issuer, {
  clients: config.clients,
  jwks: config.jwks,
  pkce: { required: () => true, methods: ['S256'] },
  features: {
    devInteractions: { enabled: false },
    rpInitiatedLogout: { enabled: true },
    // OpenID Connect Back-Channel Logout 1.0, sent to clients with backchannel_logout_uri
    // when the session ends here (end_session confirm).
    backchannelLogout: { enabled: true },
  },
  scopes: ['openid', 'profile', 'email', 'offline_access'],
  claims: {
    openid: ['sub'],
    profile: ['name', 'preferred_username', 'oid', 'tid', 'roles'],
    email: ['email'],
  },
  // Entra puts profile claims in the ID token itself; so must this provider.
  conformIdTokenClaims: false,
  subjectTypes: ['pairwise'],
  pairwiseIdentifier: async (ctx, accountId, client) =>
    crypto.createHash('sha256').update(client.sectorIdentifier).update(accountId).update(pairwiseSalt).digest('base64url'),
  issueRefreshToken: async (ctx, client, code) =>
    client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
  findAccount: async (ctx, id) => {
    const user = usersByOid.get(id);
    if (!user) return undefined;
    return {
      accountId: id,
      claims: async () => ({
        sub: id,
        name: user.name,
        preferred_username: user.email,
        oid: user.oid,
        tid: config.tenant,
        ...(user.include_email ? { email: user.email } : {}),
        // Entra app roles, as the ID token carries them for a user assigned a role.
        ...(user.roles ? { roles: user.roles } : {}),
      }),
    };
  },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  cookies: {
    keys: [crypto.randomBytes(32).toString('hex')],
    long: { sameSite: 'lax', secure: false },
    short: { sameSite: 'lax', secure: false },
  },
  ttl: { AuthorizationCode: 600, IdToken: 3600, AccessToken: 3600, Interaction: 3600, Session: 86400, Grant: 86400 },
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    ctx.body = `<!DOCTYPE html><html lang="en"><title>Error</title><h1>${escapeHtml(out.error)}</h1></html>`;
  },
});

function escapeHtml(text) {
  return String(text ?? '').replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function loginPage(uid, error, login) {
  const alert = error ? `<p role="alert" id="error">${escapeHtml(error)}</p>` : '';
  return `<!DOCTYPE html><html lang="en-GB"><head><meta charset="utf-8"><title>Sign in</title></head><body>
<main><h1>Sign in with your NHSmail account</h1><p>Independent test provider (oidc-provider).</p>${alert}
<form method="post" action="/interaction/${uid}/login">
<label for="login">Email Address</label><input id="login" name="login" type="email" value="${escapeHtml(login)}">
<label for="password">Password</label><input id="password" name="password" type="password">
<button type="submit">Sign in</button></form>
<form method="post" action="/interaction/${uid}/abort"><button type="submit">Cancel</button></form>
</main></body></html>`;
}

async function readForm(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return querystring.parse(Buffer.concat(chunks).toString('utf8'));
}

async function interaction(req, res, uid, action) {
  const details = await provider.interactionDetails(req, res);
  if (details.uid !== uid) throw new Error('interaction mismatch');
  const { prompt, params } = details;
  if (action === 'abort') {
    const result = { error: 'access_denied', error_description: 'End-User aborted interaction' };
    return provider.interactionFinished(req, res, result, { mergeWithLastSubmission: false });
  }
  if (prompt.name === 'login') {
    if (action !== 'login') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(loginPage(uid, '', ''));
    }
    const form = await readForm(req);
    const user = usersByEmail.get(String(form.login || '').trim().toLowerCase());
    if (!user || user.password !== form.password) {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      return res.end(loginPage(uid, 'Incorrect user ID or password. Type the correct user ID and password, and try again.', form.login));
    }
    return provider.interactionFinished(req, res, { login: { accountId: user.oid } }, { mergeWithLastSubmission: false });
  }
  // Consent: NHSmail apps are admin-consented, so grant what was asked for.
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
  if (prompt.details.missingOIDCScope) grant.addOIDCScope(prompt.details.missingOIDCScope.join(' '));
  if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

const callback = provider.callback();
const server = http.createServer(async (req, res) => {
  try {
    const match = req.url.match(/^\/interaction\/([^/?]+)(?:\/(login|abort))?/);
    if (match) return await interaction(req, res, match[1], match[2]);
    if (req.url === mount || req.url.startsWith(`${mount}/`) || req.url.startsWith(`${mount}?`)) {
      req.originalUrl = req.url;
      req.url = req.url.slice(mount.length) || '/';
      return callback(req, res);
    }
    res.writeHead(404, { 'content-type': 'text/plain' });
    return res.end('not found');
  } catch (error) {
    console.error(error);
    if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
    return res.end('provider error');
  }
});

server.listen(config.port, '127.0.0.1', () => {
  console.log(`listening ${config.port}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => server.close(() => process.exit(0)));
