// A real OpenID provider (panva's oidc-provider, an OpenID-certified implementation) for the web
// UI's sign-in test: one public client using PKCE, the dev login and consent pages, and an
// account whose ID token carries tracevault's role and tenant claims.
//   IDP_PORT       the port to listen on (127.0.0.1)
//   IDP_REDIRECT   tracevault's callback URL, the client's only redirect URI
import Provider from "oidc-provider";

const port = Number(process.env.IDP_PORT);
const redirect = process.env.IDP_REDIRECT;
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [
    {
      client_id: "tracevault-ui",
      token_endpoint_auth_method: "none",
      redirect_uris: [redirect],
      grant_types: ["authorization_code"],
      response_types: ["code"],
    },
  ],
  scopes: ["openid", "tracevault"],
  claims: { openid: ["sub"], tracevault: ["tracevault_role", "tracevault_tenants"] },
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  features: { devInteractions: { enabled: true } },
  findAccount: async (ctx, sub) => ({
    accountId: sub,
    claims: async () => ({ sub, tracevault_role: "investigator", tracevault_tenants: ["default"] }),
  }),
});
provider.listen(port, "127.0.0.1", () => console.log(`idp ready ${issuer}`));
