// The OpenID provider Steward's single sign-on is tested against:
// oidc-provider (npm; OpenID Certified), run as it comes, with three test
// arrangements around it:
//   - a sign-in page that signs in the account the authorization request's
//     login_hint names (the tests play the browser; no form to fill);
//   - accounts named by what they are: "unverified.NAME@DOMAIN" has an
//     address the provider has not verified, "expiring.NAME@DOMAIN" gets
//     authorization codes that expire after a second;
//   - "other-audience.NAME@DOMAIN" gets an ID token signed with the
//     provider's own key but for another audience: a provider that
//     misissues, which no compliant provider can be made to do.
// Clients register themselves (dynamic registration), each test its own.
//
//   node provider.mjs PORT
import http from 'node:http';
import { createSign, generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.argv[2] || 39127);
const issuer = `http://127.0.0.1:${port}`;

// A key made at start: nothing secret is kept in the repository.
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const signingKey = { ...privateKey.export({ format: 'jwk' }), kid: 'test-key', use: 'sig', alg: 'RS256' };

function claimsOf(id) {
  const [, kind, address] = id.match(/^(?:(unverified|expiring|other-audience)\.)?(.*)$/);
  return {
    sub: id,
    email: address,
    email_verified: kind !== 'unverified',
    name: address.split('@')[0],
  };
}

const provider = new Provider(issuer, {
  jwks: { keys: [signingKey] },
  cookies: { keys: ['steward-test-only'] },
  features: {
    devInteractions: { enabled: false },
    registration: { enabled: true },
  },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  findAccount: async (ctx, id) => ({ accountId: id, claims: async () => claimsOf(id) }),
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
  ttl: {
    AuthorizationCode: (ctx, code) => (code.accountId?.startsWith('expiring.') ? 1 : 60),
    AccessToken: 300,
    Grant: 600,
    Interaction: 600,
    Session: 600,
    IdToken: 300,
  },
});

/// Signs in whoever login_hint names and grants what the client asked for.
async function signIn(req, res) {
  const details = await provider.interactionDetails(req, res);
  const account = details.params.login_hint;
  if (!account) {
    res.statusCode = 400;
    res.end('the test provider signs in the account login_hint names');
    return;
  }
  const grant = new provider.Grant({ accountId: account, clientId: details.params.client_id });
  grant.addOIDCScope(String(details.params.scope));
  const grantId = await grant.save();
  await provider.interactionFinished(
    req,
    res,
    { login: { accountId: account }, consent: { grantId } },
    { mergeWithLastSubmission: false },
  );
}

function sign(payload) {
  const part = (value) => Buffer.from(JSON.stringify(value)).toString('base64url');
  const input = `${part({ alg: 'RS256', kid: signingKey.kid, typ: 'JWT' })}.${part(payload)}`;
  const signature = createSign('RSA-SHA256').update(input).sign(privateKey).toString('base64url');
  return `${input}.${signature}`;
}

/// Re-signs the ID token of "other-audience." accounts for someone else.
function misissueFor(res) {
  const end = res.end.bind(res);
  res.end = (chunk, ...rest) => {
    try {
      const body = JSON.parse(chunk.toString());
      const payload = JSON.parse(Buffer.from(body.id_token.split('.')[1], 'base64url'));
      if (payload.sub.startsWith('other-audience.')) {
        body.id_token = sign({ ...payload, aud: 'someone-else', azp: 'someone-else' });
        chunk = JSON.stringify(body);
        res.setHeader('content-length', Buffer.byteLength(chunk));
      }
    } catch {
      // Not a token answer: sent as it is.
    }
    return end(chunk, ...rest);
  };
}

const app = provider.callback();
http
  .createServer((req, res) => {
    if (req.url.startsWith('/interaction/')) {
      signIn(req, res).catch((e) => {
        res.statusCode = 500;
        res.end(String(e));
      });
      return;
    }
    if (req.method === 'POST' && req.url.startsWith('/token')) {
      misissueFor(res);
    }
    app(req, res);
  })
  .listen(port, '127.0.0.1', () => console.log(`OpenID provider at ${issuer}`));
