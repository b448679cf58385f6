package egress

import (
	"regexp"
	"strings"
)

// secretRule is one pattern of a well-known credential format.
type secretRule struct {
	name string
	// keywords: at least one must occur in the text for the regular
	// expression to be tried at all; for a case-insensitive rule ((?i)),
	// in lower case in the lower-cased text. Most rules start with a fixed
	// prefix, so this prefilter skips nearly every rule for ordinary text.
	keywords []string
	fold     bool
	re       *regexp.Regexp
}

// ruleSpec is a rule as written: its name, its prefilter keywords (lower
// case) and its expression.
type ruleSpec struct {
	name     string
	keywords []string
	re       string
}

// b64 is the alphabet of base64 in either variant.
const b64 = `A-Za-z0-9+/_-`

// ruleSpecs are the curated credential formats, each taken from the
// provider's own description of its token shape. Every rule is anchored
// on a distinctive prefix or a named context (aws_secret_access_key=,
// DD-API-KEY:), so that ordinary traffic does not match. gitleaks' 200-odd
// rules were considered as a dependency; its Go package pulls ~200 modules
// and a global viper into the proxy, so the formats are kept here instead,
// one test token and one near miss each (rules_test.go). Order matters
// only where two rules can match one token: the more specific comes first.
// docs/egress.md lists them; TestRuleListDocumented keeps the two in step.
func ruleSpecs() []ruleSpec {
	return []ruleSpec{
		// AI providers.
		{"anthropic-api-key", kw("sk-ant-"), `sk-ant-[A-Za-z0-9_-]{20,}`},
		{"openai-api-key", kw("sk-"), `\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]*T3BlbkFJ[A-Za-z0-9_-]+|\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}|\bsk-[A-Za-z0-9]{40,}`},
		{"huggingface-token", kw("hf_", "api_org_"), `\b(?:hf|api_org)_[A-Za-z0-9]{34,}\b`},
		{"groq-api-key", kw("gsk_"), `\bgsk_[A-Za-z0-9]{52}\b`},
		{"replicate-api-token", kw("r8_"), `\br8_[A-Za-z0-9]{37}\b`},
		{"perplexity-api-key", kw("pplx-"), `\bpplx-[A-Za-z0-9]{48}\b`},
		{"xai-api-key", kw("xai-"), `\bxai-[A-Za-z0-9]{80}\b`},

		// Cloud.
		{"aws-access-key-id", kw("AKIA", "ASIA", "ABIA", "ACCA", "A3T"), `\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}`},
		{"aws-secret-access-key", kw("aws"), `(?i)aws.{0,20}(?:secret|key).{0,20}?['"=:\s]{1,4}[A-Za-z0-9/+]{40}(?:[^A-Za-z0-9/+]|$)`},
		{"gcp-api-key", kw("AIza"), `\bAIza[0-9A-Za-z_-]{35}`},
		{"gcp-service-account", kw("service_account"), `"type"\s*:\s*"service_account"`},
		{"gcp-oauth-client-secret", kw("GOCSPX-"), `\bGOCSPX-[A-Za-z0-9_-]{28}\b`},
		{"google-oauth-access-token", kw("ya29."), `\bya29\.[A-Za-z0-9_-]{30,}`},
		{"firebase-cloud-messaging-key", kw(":APA91b"), `\bAAAA[A-Za-z0-9_-]{7}:APA91b[A-Za-z0-9_-]{100,}`},
		{"azure-storage-account-key", kw("accountkey="), `(?i)AccountKey=[A-Za-z0-9+/]{86}==`},
		{"azure-shared-access-key", kw("sharedaccesskey="), `(?i)SharedAccessKey=[A-Za-z0-9+/]{42,43}=`},
		{"azure-sas-token", kw("sig="), `\bsv=20\d\d-\d\d-\d\d&\S*?\bsig=[A-Za-z0-9%+/]{40,}|\bsig=[A-Za-z0-9%+/]{40,}\S*?&sv=20\d\d-\d\d-\d\d`},
		{"azure-ad-client-secret", kw("Q~"), `(?:^|[^A-Za-z0-9_~.])[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.-]{31,34}(?:[^A-Za-z0-9_~.-]|$)`},
		{"azure-devops-pat", kw("AZDO"), `\b[A-Za-z0-9]{52}AZDO[A-Za-z0-9]{28}\b`},
		{"digitalocean-token", kw("_v1_"), `\bdo[opr]_v1_[a-f0-9]{64}\b`},
		{"alibaba-access-key-id", kw("LTAI"), `\bLTAI[A-Za-z0-9]{12,20}\b`},
		{"heroku-api-key", kw("HRKU-AA"), `\bHRKU-AA[A-Za-z0-9_-]{58}\b`},
		{"tailscale-key", kw("tskey-"), `\btskey-(?:auth|api|client|scim|webhook)-[A-Za-z0-9]{8,}-[A-Za-z0-9]{16,}\b`},

		// Source hosting and CI.
		{"github-pat", kw("ghp_"), `\bghp_[A-Za-z0-9]{36,}`},
		{"github-oauth-token", kw("gho_"), `\bgho_[A-Za-z0-9]{36,}`},
		{"github-app-token", kw("ghu_", "ghs_"), `\bgh[us]_[A-Za-z0-9]{36,}`},
		{"github-refresh-token", kw("ghr_"), `\bghr_[A-Za-z0-9]{36,}`},
		{"github-fine-grained-pat", kw("github_pat_"), `\bgithub_pat_[A-Za-z0-9_]{22,}`},
		{"gitlab-pat", kw("glpat-"), `\bglpat-[A-Za-z0-9_-]{20,}`},
		{"gitlab-pipeline-trigger-token", kw("glptt-"), `\bglptt-[A-Za-z0-9_-]{20,}`},
		{"gitlab-runner-token", kw("glrt-", "GR1348941"), `\bglrt-[A-Za-z0-9_-]{20,}|\bGR1348941[A-Za-z0-9_-]{20,}`},
		{"gitlab-deploy-token", kw("gldt-"), `\bgldt-[A-Za-z0-9_-]{20,}`},
		{"gitlab-token", kw("glcbt-", "gloas-", "glft-", "glimt-", "glagent-", "glsoat-", "glffct-"), `\b(?:glcbt|gloas|glft|glimt|glagent|glsoat|glffct)-[A-Za-z0-9_-]{20,}`},
		{"bitbucket-app-password", kw("ATBB"), `\bATBB[A-Za-z0-9]{28,}`},
		{"atlassian-api-token", kw("ATATT3", "ATCTT3"), `\bAT(?:ATT|CTT)3[A-Za-z0-9_=-]{50,}`},
		{"circleci-token", kw("CCIPAT_", "CCIPRJ_"), `\bCCIP(?:AT|RJ)_[A-Za-z0-9]{20,}_[a-f0-9]{40}\b`},
		{"travis-ci-token", kw("travis"), `(?i)travis[_-]?(?:ci[_-]?)?(?:api[_-]?)?token['"\s:=]{1,4}[A-Za-z0-9_-]{22}\b`},
		{"buildkite-token", kw("bkua_"), `\bbkua_[a-f0-9]{40}\b`},

		// Payment.
		{"stripe-secret-key", kw("sk_live_", "sk_test_"), `\bsk_(?:live|test)_[A-Za-z0-9]{20,}`},
		{"stripe-restricted-key", kw("rk_live_", "rk_test_"), `\brk_(?:live|test)_[A-Za-z0-9]{20,}`},
		{"stripe-webhook-secret", kw("whsec_"), `\bwhsec_[A-Za-z0-9+/=]{32,}`},
		{"square-access-token", kw("sq0atp-", "EAAA"), `\bsq0atp-[A-Za-z0-9_-]{22}\b|\bEAAA[A-Za-z0-9_-]{60}\b`},
		{"square-oauth-secret", kw("sq0csp-"), `\bsq0csp-[A-Za-z0-9_-]{43}\b`},
		{"braintree-access-token", kw("access_token$"), `access_token\$(?:production|sandbox)\$[a-z0-9]{16}\$[a-f0-9]{32}`},
		{"shopify-access-token", kw("shpat_"), `\bshpat_[a-fA-F0-9]{32}\b`},
		{"shopify-custom-app-token", kw("shpca_"), `\bshpca_[a-fA-F0-9]{32}\b`},
		{"shopify-private-app-token", kw("shppa_"), `\bshppa_[a-fA-F0-9]{32}\b`},
		{"shopify-shared-secret", kw("shpss_"), `\bshpss_[a-fA-F0-9]{32}\b`},
		{"razorpay-key", kw("rzp_live_"), `\brzp_live_[A-Za-z0-9]{14}\b`},

		// Messaging.
		{"slack-token", kw("xox"), `\bxox[abposre]-[A-Za-z0-9-]{10,}`},
		{"slack-app-token", kw("xapp-"), `\bxapp-\d-[A-Za-z0-9-]{10,}`},
		{"slack-webhook", kw("hooks.slack.com"), `hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9+/_-]{20,}`},
		{"twilio-api-key", kw("SK"), `\bSK[0-9a-fA-F]{32}\b`},
		{"twilio-account-sid", kw("AC"), `\bAC[0-9a-f]{32}\b`},
		{"sendgrid-api-key", kw("SG."), `\bSG\.[A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43}\b`},
		{"mailgun-api-key", kw("key-"), `\bkey-[0-9a-f]{32}\b`},
		{"mailchimp-api-key", kw("-us"), `\b[0-9a-f]{32}-us\d{1,2}\b`},
		{"telegram-bot-token", kw(":AA"), `\b\d{8,10}:AA[A-Za-z0-9_-]{33}\b`},
		{"discord-bot-token", kw("discord", "Discord", "DISCORD", "Bot ", "bot "), `(?i:discord[A-Za-z_-]{0,20}['"\s:=]{1,4}(?:Bot\s+)?|\bBot\s+)[MNO][A-Za-z0-9_-]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,38}\b`},
		{"discord-webhook", kw("/api/webhooks/"), `discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_-]{60,}`},
		{"teams-webhook", kw("webhook.office.com"), `\.webhook\.office\.com/webhookb2/[A-Za-z0-9-]{20,}@`},

		// Observability, productivity and developer platforms.
		{"newrelic-user-api-key", kw("NRAK-"), `\bNRAK-[A-Z0-9]{27}\b`},
		{"newrelic-insert-key", kw("NRII-", "NRIQ-"), `\bNRI[IQ]-[A-Za-z0-9_-]{32}\b`},
		{"newrelic-license-key", kw("NRAL"), `\b[a-f0-9]{36}NRAL\b`},
		{"grafana-cloud-token", kw("glc_"), `\bglc_[A-Za-z0-9+/]{32,}={0,2}`},
		{"grafana-service-account-token", kw("glsa_"), `\bglsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}\b`},
		{"datadog-api-key", kw("datadog", "dd-ap", "dd_ap", "ddap"), `(?i)(?:datadog|\bdd)[_-]?(?:api|app(?:lication)?)[_-]?key['"\s:=]{1,4}[a-f0-9]{32,40}\b`},
		{"sentry-dsn", kw("sentry.io"), `[a-f0-9]{32}@o?\d*\.?ingest\.(?:[a-z]{2}\.)?sentry\.io`},
		{"sentry-auth-token", kw("sntrys_", "sntryu_"), `\bsntrys_eyJ[A-Za-z0-9+/=_-]{50,}|\bsntryu_[a-f0-9]{64}\b`},
		{"doppler-token", kw("dp.pt.", "dp.st.", "dp.sa.", "dp.ct.", "dp.scim.", "dp.audit."), `\bdp\.(?:pt|st|sa|ct|scim|audit)\.[A-Za-z0-9]{40,44}\b`},
		{"linear-api-key", kw("lin_api_"), `\blin_api_[A-Za-z0-9]{40}\b`},
		{"postman-api-key", kw("PMAK-"), `\bPMAK-[a-f0-9]{24}-[a-f0-9]{34}\b`},
		{"databricks-token", kw("dapi"), `\bdapi[a-f0-9]{32}(?:-\d)?\b`},
		{"pulumi-access-token", kw("pul-"), `\bpul-[a-f0-9]{40}\b`},
		{"vault-token", kw("hvs.", "hvb."), `\bhv[sb]\.[A-Za-z0-9_-]{24,}`},
		{"terraform-cloud-token", kw(".atlasv1."), `\b[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,}`},
		{"okta-api-token", kw("ssws", "okta"), `(?i)\bSSWS\s+00[A-Za-z0-9_-]{40}\b|(?i)okta[A-Za-z_-]{0,20}['"\s:=]{1,4}00[A-Za-z0-9_-]{40}\b`},
		{"notion-api-token", kw("ntn_"), `\bntn_\d{11}[A-Za-z0-9]{35}\b`},
		{"airtable-pat", kw("pat"), `pat[A-Za-z0-9]{14}\.[a-f0-9]{64}\b`},
		{"figma-pat", kw("figd_"), `\bfigd_[A-Za-z0-9_-]{40,}`},
		{"1password-service-account-token", kw("ops_eyJ"), `\bops_eyJ[A-Za-z0-9+/=_-]{100,}`},
		{"planetscale-token", kw("pscale_"), `\bpscale_(?:tkn|pw|oauth)_[A-Za-z0-9_.=-]{32,64}`},
		{"supabase-token", kw("sbp_"), `\bsbp_[a-f0-9]{40}\b`},
		{"mapbox-secret-token", kw("sk.eyJ"), `\bsk\.eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}`},
		{"dropbox-access-token", kw("sl."), `\bsl\.[A-Za-z0-9_-]{130,}`},
		{"prefect-api-key", kw("pnu_"), `\bpnu_[A-Za-z0-9]{36}\b`},

		// Package registries.
		{"npm-token", kw("npm_"), `\bnpm_[A-Za-z0-9]{36}\b`},
		{"pypi-token", kw("pypi-AgEIcHlwaS5vcmc"), `pypi-AgEIcHlwaS5vcmc[A-Za-z0-9_-]{40,}`},
		{"rubygems-api-key", kw("rubygems_"), `\brubygems_[a-f0-9]{48}\b`},
		{"nuget-api-key", kw("oy2"), `\boy2[a-z0-9]{43}\b`},
		{"dockerhub-token", kw("dckr_"), `\bdckr_(?:pat|oat)_[A-Za-z0-9_-]{27,}`},
		{"crates-io-token", kw("cio"), `\bcio[A-Za-z0-9]{32}\b`},
		{"clojars-token", kw("CLOJARS_"), `\bCLOJARS_[a-z0-9]{60}\b`},

		// Private keys. The specific kinds come before the generic PEM rule.
		{"openssh-private-key", kw("OPENSSH PRIVATE KEY"), `-----BEGIN OPENSSH PRIVATE KEY-----`},
		{"pgp-private-key", kw("PGP PRIVATE KEY BLOCK"), `-----BEGIN PGP PRIVATE KEY BLOCK-----`},
		{"private-key", kw("PRIVATE KEY"), `-----BEGIN[ A-Z0-9_-]{0,100}PRIVATE KEY(?: BLOCK)?-----`},
		{"putty-private-key", kw("PuTTY-User-Key-File-"), `PuTTY-User-Key-File-[23]: `},
		{"age-secret-key", kw("AGE-SECRET-KEY-1"), `\bAGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}\b`},

		// Connection strings with a password (user:password@).
		{"postgres-url-with-password", kw("postgres"), `\bpostgres(?:ql)?://[^\s:@/]+:[^\s@/]+@[^\s/]+`},
		{"mysql-url-with-password", kw("mysql", "mariadb"), `\b(?:mysql|mariadb)(?:\+[a-z]+)?://[^\s:@/]+:[^\s@/]+@[^\s/]+`},
		{"mongodb-url-with-password", kw("mongodb"), `\bmongodb(?:\+srv)?://[^\s:@/]+:[^\s@/]+@[^\s/]+`},
		{"redis-url-with-password", kw("redis"), `\brediss?://[^\s:@/]*:[^\s@/]+@[^\s/]+`},
		{"amqp-url-with-password", kw("amqp"), `\bamqps?://[^\s:@/]+:[^\s@/]+@[^\s/]+`},

		// Generic signed tokens.
		{"jwt", kw("eyJ"), `\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}`},
	}
}

func kw(words ...string) []string { return words }

// ruleSet is the compiled rules with an index of their keywords.
type ruleSet struct {
	rules []secretRule
	exact kwIndex // keywords of case-sensitive rules, in the text as is
	fold  kwIndex // keywords of (?i) rules, in the lower-cased text
}

// kwIndex finds every keyword occurring in a text in one pass: a bitset of
// the keywords' first two bytes says where to look closer.
type kwIndex struct {
	pairs  [1 << 16 / 64]uint64
	byPair map[uint16][]kwEntry
}

type kwEntry struct {
	word string
	rule int
}

func (x *kwIndex) add(word string, rule int) {
	p := uint16(word[0])<<8 | uint16(word[1])
	x.pairs[p/64] |= 1 << (p % 64)
	if x.byPair == nil {
		x.byPair = map[uint16][]kwEntry{}
	}
	x.byPair[p] = append(x.byPair[p], kwEntry{word, rule})
}

func (x *kwIndex) has(p uint16) bool { return x.pairs[p/64]&(1<<(p%64)) != 0 }

// mark sets present[rule] for every rule with a keyword in text; with
// fold, text is compared as if lower-cased (ASCII).
func (x *kwIndex) mark(text string, i int, p uint16, fold bool, present []bool) {
	for _, e := range x.byPair[p] {
		if len(text)-i < len(e.word) {
			continue
		}
		if fold && asciiLowerEqual(text[i:i+len(e.word)], e.word) || !fold && text[i:i+len(e.word)] == e.word {
			present[e.rule] = true
		}
	}
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// asciiLowerEqual reports whether s lower-cased is lower.
func asciiLowerEqual(s, lower string) bool {
	for i := 0; i < len(s); i++ {
		if lowerByte(s[i]) != lower[i] {
			return false
		}
	}
	return true
}

// markAll runs every index over text in one pass.
func markAll(text string, exact, fold *kwIndex, present []bool) {
	for i := 0; i+1 < len(text); i++ {
		if p := uint16(text[i])<<8 | uint16(text[i+1]); exact.has(p) {
			exact.mark(text, i, p, false, present)
		}
		if fold != nil {
			if p := uint16(lowerByte(text[i]))<<8 | uint16(lowerByte(text[i+1])); fold.has(p) {
				fold.mark(text, i, p, true, present)
			}
		}
	}
}

// curatedRules compiles ruleSpecs.
func curatedRules() *ruleSet {
	specs := ruleSpecs()
	rs := &ruleSet{rules: make([]secretRule, len(specs))}
	for i, r := range specs {
		fold := strings.HasPrefix(r.re, "(?i)")
		rs.rules[i] = secretRule{name: r.name, keywords: r.keywords, fold: fold, re: regexp.MustCompile(r.re)}
		for _, w := range r.keywords {
			if len(w) < 2 {
				panic("egress: rule " + r.name + ": keyword shorter than 2 bytes")
			}
			if fold {
				rs.fold.add(strings.ToLower(w), i)
			} else {
				rs.exact.add(w, i)
			}
		}
	}
	return rs
}

// RuleNames lists the credential formats the scanner knows, in order.
func RuleNames() []string {
	specs := ruleSpecs()
	out := make([]string, len(specs))
	for i, r := range specs {
		out[i] = r.name
	}
	return out
}

// match reports the first rule matching text, given which rules' keywords
// markAll found in it.
func (rs *ruleSet) match(text string, present []bool) (string, bool) {
	for i, r := range rs.rules {
		if len(r.keywords) > 0 && !present[i] {
			continue
		}
		if r.re.MatchString(text) {
			return r.name, true
		}
	}
	return "", false
}
