package agent

import (
	"fmt"
	"regexp"
	"strings"
)

// Claude Code on Amazon Bedrock and Google Vertex AI. The agent holds no
// cloud credential at all: Claude Code is told to skip its own
// authentication (CLAUDE_CODE_SKIP_*_AUTH) and sends its requests to the
// proxy, which signs them with the host's credentials. What reaches the
// provider is limited to the model calls Claude Code makes, for the
// configured region (and project) only.

var (
	awsRegion    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$`)
	vertexRegion = regexp.MustCompile(`^([a-z]+(-[a-z]+)*[0-9]{0,2}|global)$`)
	gcpProject   = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
)

func claudeBedrock(lookup func(string) (string, bool)) (APIAuth, error) {
	region := firstSet(lookup, "AWS_REGION", "AWS_DEFAULT_REGION")
	switch {
	case region == "":
		return APIAuth{}, fmt.Errorf("CLAUDE_CODE_USE_BEDROCK is set but AWS_REGION is not: Claude Code needs it (it does not read the region from ~/.aws/config); export AWS_REGION=us-east-1, or the region you use")
	case !awsRegion.MatchString(region):
		return APIAuth{}, fmt.Errorf("AWS_REGION %q is not an AWS region name like us-east-1", region)
	}
	return APIAuth{
		Env: []string{
			"CLAUDE_CODE_USE_BEDROCK=1",
			"ANTHROPIC_BEDROCK_BASE_URL=" + APIBaseURL,
			"AWS_REGION=" + region,
			"CLAUDE_CODE_SKIP_BEDROCK_AUTH=1",
		},
		// Whatever signature or key the agent sends is dropped.
		Strip:      []string{"Authorization", "X-Api-Key", "X-Amz-Date", "X-Amz-Security-Token", "X-Amz-Content-Sha256"},
		Upstream:   "https://bedrock-runtime." + region + ".amazonaws.com",
		GatewayEnv: "ANTHROPIC_BEDROCK_BASE_URL",
		Routes: []Route{
			// Claude Code lists the inference profiles to pick model ids;
			// that is Bedrock's control plane, another host.
			{Method: "GET", Path: "/inference-profiles", Upstream: "https://bedrock." + region + ".amazonaws.com"},
			{Method: "POST", Path: "/model/*/invoke-with-response-stream", Metered: true},
			// Before its first turn Claude Code probes, with one-token
			// calls, which models the account may use.
			{Method: "POST", Path: "/model/*/invoke", Metered: true, NoTurn: true},
			{Method: "POST", Path: "/model/*/count-tokens"},
		},
		Usage: "bedrock",
		Cloud: &Cloud{Provider: "bedrock", Region: region},
	}, nil
}

func claudeVertex(lookup func(string) (string, bool)) (APIAuth, error) {
	region := firstSet(lookup, "CLOUD_ML_REGION")
	project := firstSet(lookup, "ANTHROPIC_VERTEX_PROJECT_ID")
	switch {
	case project == "":
		return APIAuth{}, fmt.Errorf("CLAUDE_CODE_USE_VERTEX is set but ANTHROPIC_VERTEX_PROJECT_ID is not: export it with your Google Cloud project id")
	case !gcpProject.MatchString(project):
		return APIAuth{}, fmt.Errorf("ANTHROPIC_VERTEX_PROJECT_ID %q is not a Google Cloud project id (6-30 lower-case letters, digits and dashes)", project)
	case region == "":
		return APIAuth{}, fmt.Errorf("CLAUDE_CODE_USE_VERTEX is set but CLOUD_ML_REGION is not: export CLOUD_ML_REGION=global, or the region you use (us-east5, europe-west1, ...)")
	case !vertexRegion.MatchString(region):
		return APIAuth{}, fmt.Errorf("CLOUD_ML_REGION %q is not a Vertex AI location like us-east5 or global", region)
	}
	host := region + "-aiplatform.googleapis.com"
	if region == "global" {
		host = "aiplatform.googleapis.com"
	}
	models := "/v1/projects/" + project + "/locations/" + region + "/publishers/anthropic/models/"
	return APIAuth{
		Env: []string{
			"CLAUDE_CODE_USE_VERTEX=1",
			"ANTHROPIC_VERTEX_BASE_URL=" + APIBaseURL + "/v1",
			"CLOUD_ML_REGION=" + region,
			"ANTHROPIC_VERTEX_PROJECT_ID=" + project,
			"CLAUDE_CODE_SKIP_VERTEX_AUTH=1",
		},
		Strip:    []string{"Authorization", "X-Api-Key", "X-Goog-Api-Key", "X-Goog-User-Project"},
		Upstream: "https://" + host,
		// Only this project and region: a per-model region
		// (VERTEX_REGION_CLAUDE_*) is refused, not silently widened.
		Routes: []Route{
			// Before the model route: "count-tokens" would match its *.
			{Method: "POST", Path: models + "count-tokens:rawPredict"},
			{Method: "POST", Path: models + "*:streamRawPredict", Metered: true},
			{Method: "POST", Path: models + "*:rawPredict", Metered: true},
		},
		Usage: "anthropic",
		Cloud: &Cloud{Provider: "vertex", Region: region, Project: project},
	}, nil
}

func firstSet(lookup func(string) (string, bool), names ...string) string {
	for _, n := range names {
		if v, _ := lookup(n); strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}
