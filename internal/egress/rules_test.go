package egress

import (
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
)

// r repeats s until the result is n characters long. Test tokens are built
// from repeated parts at run time, so that no literal in the repository
// looks like a real credential to a secret scanner, and so that they are
// of low entropy (the entropy detector stays out of the rule tests).
func r(s string, n int) string {
	return strings.Repeat(s, n/len(s)+1)[:n]
}

// ruleCase is one credential format: a token in its documented shape that
// must match the rule, and a near miss (wrong prefix, too short, wrong
// alphabet) that must match nothing.
type ruleCase struct {
	rule, token, nearMiss string
}

// RuleCases are exported to the e2e tests through ruleCases' copy in
// internal/e2e; keep one per rule.
func ruleCases() []ruleCase {
	hex32 := r("a1b2c3d4e5f6", 32)
	return []ruleCase{
		{"anthropic-api-key", "sk-ant-" + "api03-" + r("AbC1", 40), "sk-ant-" + "short"},
		{"openai-api-key", "sk-" + "proj-" + r("AbC1", 40), "sk-" + "proj-" + "abc"},
		{"huggingface-token", "hf_" + r("AbCd", 34), "hf_" + r("AbCd", 20)},
		{"groq-api-key", "gsk_" + r("AbC1", 52), "gsk_" + r("AbC1", 40)},
		{"replicate-api-token", "r8_" + r("AbC1", 37), "r8_" + r("AbC1", 30)},
		{"perplexity-api-key", "pplx-" + r("AbC1", 48), "pplx-" + r("AbC1", 30)},
		{"xai-api-key", "xai-" + r("AbC1", 80), "xai-" + r("AbC1", 40)},

		{"aws-access-key-id", "AKIA" + r("Q7ZX", 16), "AKIB" + r("Q7ZX", 16)},
		{"aws-secret-access-key", "aws_secret_access_key = " + r("AbC1/+", 40), "aws_region = " + r("AbC1", 40)},
		{"gcp-api-key", "AIza" + r("Sy1_", 35), "AIza" + r("Sy1_", 20)},
		{"gcp-service-account", `{"type": "` + "service_account" + `"}`, `{"type": "service"}`},
		{"gcp-oauth-client-secret", "GOCSPX-" + r("AbC1_", 28), "GOCSPX-" + r("AbC1", 10)},
		{"google-oauth-access-token", "ya29." + r("A0b_", 60), "ya29." + "abc"},
		{"firebase-cloud-messaging-key", "AAAA" + r("Ab1_", 7) + ":APA91b" + r("Ab1_", 134), "AAAA" + r("Ab1_", 7) + ":APA91" + r("Ab1_", 20)},
		{"azure-storage-account-key", "DefaultEndpointsProtocol=https;AccountName=acct;" + "AccountKey=" + r("Ab1+", 86) + "==", "AccountName=acct;AccountKey=" + r("Ab1", 20)},
		{"azure-shared-access-key", "Endpoint=sb://ns.servicebus.windows.net/;" + "SharedAccessKey=" + r("Ab1+", 43) + "=", "SharedAccessKeyName=RootManageSharedAccessKey"},
		{"azure-sas-token", "/c/blob?sv=2022-11-02&ss=b&sp=r&" + "sig=" + r("Ab1%2B", 44), "/c/blob?sv=2022-11-02&sig=short"},
		{"azure-ad-client-secret", "secret=" + "abc8" + "Q~" + r("Ab1_", 34), "secret=" + "abc8" + "Q~" + "short"},
		{"azure-devops-pat", r("ab1c", 52) + "AZDO" + r("ab1c", 28), r("ab1c", 52) + "AZDX" + r("ab1c", 28)},
		{"digitalocean-token", "dop_" + "v1_" + r("a1b2", 64), "dop_" + "v2_" + r("a1b2", 64)},
		{"alibaba-access-key-id", "LTAI" + r("Ab1c", 20), "LTAI" + "short"},
		{"heroku-api-key", "HRKU-" + "AA" + r("Ab1_", 58), "HRKU-" + "AB" + r("Ab1_", 58)},
		{"tailscale-key", "tskey-" + "auth-" + r("kA1b", 12) + "-" + r("Ab1c", 30), "tskey-" + "other-" + r("kA1b", 12) + "-" + r("Ab1c", 30)},

		{"github-pat", "ghp_" + r("AbC1", 36), "ghp_" + r("AbC1", 20)},
		{"github-oauth-token", "gho_" + r("AbC1", 36), "gho_" + r("AbC1", 20)},
		{"github-app-token", "ghs_" + r("AbC1", 36), "ghx_" + r("AbC1", 36)},
		{"github-refresh-token", "ghr_" + r("AbC1", 36), "ghr_" + r("AbC1", 30)},
		{"github-fine-grained-pat", "github_pat_" + r("11AbC_", 82), "github_pat_" + "short"},
		{"gitlab-pat", "glpat-" + r("Ab1_", 20), "glpat-" + r("Ab1_", 10)},
		{"gitlab-pipeline-trigger-token", "glptt-" + r("a1b2", 40), "glptt-" + "short"},
		{"gitlab-runner-token", "glrt-" + r("Ab1_", 20), "glrt-" + "short"},
		{"gitlab-deploy-token", "gldt-" + r("Ab1_", 20), "gldt-" + "short"},
		{"gitlab-token", "glcbt-" + r("Ab1_", 20), "glxyz-" + r("Ab1_", 20)},
		{"bitbucket-app-password", "ATBB" + r("Ab1c", 32), "ATBB" + "short"},
		{"atlassian-api-token", "ATATT3" + "xFfGF0" + r("Ab1_", 180), "ATATT3" + "short"},
		{"circleci-token", "CCIPAT_" + r("Ab1c", 22) + "_" + r("a1b2", 40), "CCIPAT_" + r("Ab1c", 22) + "_" + "a1b2"},
		{"travis-ci-token", "TRAVIS_TOKEN=" + r("Ab1c", 22), "TRAVIS_BRANCH=" + r("Ab1c", 22)},
		{"buildkite-token", "bkua_" + r("a1b2", 40), "bkua_" + r("a1b2", 20)},

		{"stripe-secret-key", "sk_" + "live_" + r("a1B2", 24), "sk_" + "lime_" + r("a1B2", 24)},
		{"stripe-restricted-key", "rk_" + "live_" + r("a1B2", 24), "rk_" + "live_" + r("a1B2", 10)},
		{"stripe-webhook-secret", "whsec_" + r("a1B2", 32), "whsec_" + "short"},
		{"square-access-token", "EAAA" + r("a1B2_", 60), "EAAB" + r("a1B2_", 60)},
		{"square-oauth-secret", "sq0csp-" + r("a1B2_", 43), "sq0csp-" + "short"},
		{"braintree-access-token", "access_token$" + "production$" + r("a1b2", 16) + "$" + hex32, "access_token$" + "production$" + "short"},
		{"shopify-access-token", "shpat_" + hex32, "shpat_" + r("xyzw", 32)},
		{"shopify-custom-app-token", "shpca_" + hex32, "shpca_" + hex32[:20]},
		{"shopify-private-app-token", "shppa_" + hex32, "shppa_" + hex32[:20]},
		{"shopify-shared-secret", "shpss_" + hex32, "shpss_" + hex32[:20]},
		{"razorpay-key", "rzp_" + "live_" + r("Ab1c", 14), "rzp_" + "test_" + r("Ab1c", 14)},

		{"slack-token", "xoxb-" + r("1234567890-", 40), "xoxz-" + r("1234567890-", 40)},
		{"slack-app-token", "xapp-" + "1-" + r("A1B2-", 40), "xapp-" + "x-" + r("A1B2-", 40)},
		{"slack-webhook", "https://hooks.slack.com/services/" + r("T0B1X2", 40), "https://hooks.slack.com/help"},
		{"twilio-api-key", "SK" + hex32, "SK" + hex32[:20]},
		{"twilio-account-sid", "AC" + hex32, "AC" + r("xyzw", 32)},
		{"sendgrid-api-key", "SG." + r("Ab1_", 22) + "." + r("Ab1_", 43), "SG." + r("Ab1_", 10) + "." + r("Ab1_", 43)},
		{"mailgun-api-key", "key-" + hex32, "key-" + r("xyzw", 32)},
		{"mailchimp-api-key", hex32 + "-us12", hex32 + "-eu12"},
		{"telegram-bot-token", "123456789:" + "AA" + r("Ab1_", 33), "123456789:" + "BB" + r("Ab1_", 33)},
		{"discord-bot-token", "Authorization: Bot " + "M" + r("Tk1_", 23) + "." + r("Gh1_", 6) + "." + r("Ab1_", 38), "Authorization: Bot " + "M" + r("Tk1_", 10) + "." + r("Gh1_", 6) + "." + r("Ab1_", 38)},
		{"discord-webhook", "https://discord.com/api/webhooks/123456789012345678/" + r("Ab1_", 68), "https://discord.com/api/webhooks/123456789012345678/short"},
		{"teams-webhook", "https://acme.webhook.office.com/webhookb2/" + r("a1b2-", 36) + "@" + r("a1b2-", 36), "https://acme.webhook.office.com/webhookb2/short"},

		{"newrelic-user-api-key", "NRAK-" + r("A1B2", 27), "NRAK-" + r("a1b2", 27)},
		{"newrelic-insert-key", "NRII-" + r("Ab1_", 32), "NRII-" + r("Ab1_", 20)},
		{"newrelic-license-key", r("a1b2", 36) + "NRAL", r("a1b2", 36) + "NRAX"},
		{"grafana-cloud-token", "glc_" + r("eyJvIjoi", 80), "glc_" + "short"},
		{"grafana-service-account-token", "glsa_" + r("Ab1c", 32) + "_" + r("a1b2", 8), "glsa_" + r("Ab1c", 20) + "_" + r("a1b2", 8)},
		{"datadog-api-key", "DD-API-KEY: " + hex32, "DD-API-VERSION: " + hex32},
		{"sentry-dsn", "https://" + hex32 + "@o123456.ingest.sentry.io/4505", "https://" + "public" + "@o123456.ingest.sentry.io/4505"},
		{"sentry-auth-token", "sntrys_" + "eyJ" + r("Ab1_", 80), "sntrys_" + "short"},
		{"doppler-token", "dp.pt." + r("Ab1c", 43), "dp.xx." + r("Ab1c", 43)},
		{"linear-api-key", "lin_api_" + r("Ab1c", 40), "lin_api_" + r("Ab1c", 20)},
		{"postman-api-key", "PMAK-" + r("a1b2", 24) + "-" + r("a1b2", 34), "PMAK-" + r("a1b2", 24)},
		{"databricks-token", "dapi" + hex32, "dapi" + r("xyzw", 32)},
		{"pulumi-access-token", "pul-" + r("a1b2", 40), "pul-" + r("a1b2", 20)},
		{"vault-token", "hvs." + r("CAESIAb1_", 90), "hvs." + "short"},
		{"terraform-cloud-token", r("Ab1c", 14) + ".atlasv1." + r("Ab1_", 67), r("Ab1c", 14) + ".atlasv2." + r("Ab1_", 67)},
		{"okta-api-token", "Authorization: SSWS " + "00" + r("Ab1_", 40), "Authorization: SSWS " + "11" + r("Ab1_", 40)},
		{"notion-api-token", "ntn_" + r("12345", 11) + r("Ab1c", 35), "ntn_" + "short"},
		{"airtable-pat", "pat" + r("Ab1c", 14) + "." + r("a1b2", 64), "pat" + r("Ab1c", 14) + "." + r("a1b2", 30)},
		{"figma-pat", "figd_" + r("Ab1_", 40), "figd_" + "short"},
		{"1password-service-account-token", "ops_" + "eyJ" + r("Ab1+", 200), "ops_" + "eyJ" + "short"},
		{"planetscale-token", "pscale_" + "tkn_" + r("Ab1_", 43), "pscale_" + "xyz_" + r("Ab1_", 43)},
		{"supabase-token", "sbp_" + r("a1b2", 40), "sbp_" + r("a1b2", 20)},
		{"mapbox-secret-token", "sk." + "eyJ" + r("Ab1_", 40) + "." + r("Ab1_", 22), "pk." + "eyJ" + r("Ab1_", 40) + "." + r("Ab1_", 22)},
		{"dropbox-access-token", "sl." + r("Ab1_", 140), "sl." + "short"},
		{"prefect-api-key", "pnu_" + r("Ab1c", 36), "pnu_" + r("Ab1c", 20)},

		{"npm-token", "npm_" + r("Ab1c", 36), "npm_" + r("Ab1c", 20)},
		{"pypi-token", "pypi-" + "AgEIcHlwaS5vcmc" + r("Ab1_", 60), "pypi-" + "AgEI" + r("ab", 30)},
		{"rubygems-api-key", "rubygems_" + r("a1b2", 48), "rubygems_" + r("a1b2", 20)},
		{"nuget-api-key", "oy2" + r("a1b2", 43), "oy2" + r("a1b2", 20)},
		{"dockerhub-token", "dckr_" + "pat_" + r("Ab1_", 27), "dckr_" + "pat_" + "short"},
		{"crates-io-token", "cio" + r("Ab1c", 32), "cio" + r("Ab1c", 20)},
		{"clojars-token", "CLOJARS_" + r("a1b2", 60), "CLOJARS_" + r("a1b2", 20)},

		{"openssh-private-key", "-----BEGIN " + "OPENSSH PRIVATE KEY-----", "-----BEGIN " + "OPENSSH PUBLIC KEY-----"},
		{"pgp-private-key", "-----BEGIN " + "PGP PRIVATE KEY BLOCK-----", "-----BEGIN " + "PGP PUBLIC KEY BLOCK-----"},
		{"private-key", "-----BEGIN " + "RSA PRIVATE KEY-----", "-----BEGIN " + "CERTIFICATE-----"},
		{"putty-private-key", "PuTTY-User-Key-File-" + "3: ssh-ed25519", "PuTTY-User-Key-File-" + "9: ssh-ed25519"},
		{"age-secret-key", "AGE-SECRET-KEY-" + "1" + r("QPZRY9X8GF", 58), "AGE-SECRET-KEY-" + "1" + r("QPZRB", 58)},

		{"postgres-url-with-password", "postgres://" + "app:" + "pw" + r("x1", 10) + "@db.internal:5432/app", "postgres://app@db.internal:5432/app"},
		{"mysql-url-with-password", "mysql://" + "root:" + "pw" + r("x1", 10) + "@db:3306/app", "mysql://db:3306/app"},
		{"mongodb-url-with-password", "mongodb+srv://" + "u:" + "pw" + r("x1", 10) + "@cluster0.example.net/db", "mongodb+srv://cluster0.example.net/db"},
		{"redis-url-with-password", "redis://" + ":" + "pw" + r("x1", 10) + "@cache:6379/0", "redis://cache:6379/0"},
		{"amqp-url-with-password", "amqps://" + "u:" + "pw" + r("x1", 10) + "@mq.example.com/vhost", "amqps://mq.example.com/vhost"},

		{"jwt", "ey" + "J" + r("hbGci", 20) + ".ey" + "J" + r("zdWIi", 20) + "." + r("Ab1_", 30), "ey" + "J" + r("hbGci", 20)},
	}
}

func TestRulesTokensAndNearMisses(t *testing.T) {
	s := NewScanner(nil)
	cases := ruleCases()
	covered := map[string]bool{}
	for _, tc := range cases {
		covered[tc.rule] = true
		t.Run(tc.rule, func(t *testing.T) {
			// Alone, and inside a URL query, a header line and JSON.
			for _, text := range []string{tc.token, "/x?v=" + tc.token + "&y=1", "X-Data: " + tc.token, `{"k":"` + tc.token + `"}`} {
				if rule, found := s.Scan(text); !found || rule != tc.rule {
					t.Errorf("Scan(%q) = %q, %v; want %q", text, rule, found, tc.rule)
				}
			}
			if rule, found := s.Scan(tc.nearMiss); found {
				t.Errorf("near miss %q matched %q", tc.nearMiss, rule)
			}
		})
	}
	for _, name := range RuleNames() {
		if !covered[name] {
			t.Errorf("rule %s has no test token", name)
		}
	}
	if n := len(RuleNames()); n < 48 {
		t.Errorf("%d rules, want at least 48", n)
	}
}

// TestNearMissesPassRequests sends every near miss through the whole
// request scan (rules, held secrets, entropy) in a query, a header and a
// body: none may be refused.
func TestNearMissesPassRequests(t *testing.T) {
	s := NewScanner([]string{"sk-ant-api03-" + r("Zy9x", 80)})
	for _, tc := range ruleCases() {
		req, _ := http.NewRequest("POST", "http://h.test/x?k="+url.QueryEscape(tc.nearMiss), strings.NewReader(tc.nearMiss))
		req.RequestURI = req.URL.RequestURI()
		req.Header.Set("X-Data", tc.nearMiss)
		if hit, err := s.ScanRequest(req, 64<<10); hit != nil || err != nil {
			t.Errorf("%s: near miss refused: %v %v", tc.rule, hit, err)
		}
	}
}

// TestRuleListDocumented keeps docs/egress.md's list of formats in step
// with the rules.
func TestRuleListDocumented(t *testing.T) {
	doc, err := os.ReadFile("../../docs/egress.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range RuleNames() {
		if !strings.Contains(string(doc), "`"+name+"`") {
			t.Errorf("docs/egress.md does not list rule `%s`", name)
		}
	}
}
