package provider

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/feature/ec2/imds"
)

func resolveBedrock(get func(string) string) (Settings, error) {
	s := Settings{Provider: Bedrock, Region: get("AWS_REGION")}
	if s.Region == "" {
		s.Region = get("AWS_DEFAULT_REGION")
	}
	if s.Region == "" {
		return Settings{}, errors.New("Bedrock: AWS_REGION is not set (Claude Code needs it with CLAUDE_CODE_USE_BEDROCK): export AWS_REGION, e.g. AWS_REGION=us-east-1")
	}
	if get("AWS_BEARER_TOKEN_BEDROCK") != "" {
		s.Static = true
		return s, nil
	}
	id, secret := get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")
	switch {
	case id != "" && secret != "":
		s.Static = true
		return s, nil
	case id != "":
		return Settings{}, errors.New("Bedrock: AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not: set both, or neither to use a profile")
	case secret != "":
		return Settings{}, errors.New("Bedrock: AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not: set both, or neither to use a profile")
	}
	s.Profile = get("AWS_PROFILE")
	home := get("HOME")
	s.ConfigFile, s.CredentialsFile = get("AWS_CONFIG_FILE"), get("AWS_SHARED_CREDENTIALS_FILE")
	if home == "" && (s.ConfigFile == "" || s.CredentialsFile == "") {
		return Settings{}, errors.New("Bedrock: HOME is not set, so ~/.aws/config cannot be found: set HOME, or AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE")
	}
	if s.ConfigFile == "" {
		s.ConfigFile = filepath.Join(home, ".aws", "config")
	}
	if s.CredentialsFile == "" {
		s.CredentialsFile = filepath.Join(home, ".aws", "credentials")
	}
	return s, nil
}

func openBedrock(ctx context.Context, s Settings, get func(string) string, fw hostFirmware) (Source, error) {
	if s.Region == "" {
		return nil, errors.New("Bedrock: no region: export AWS_REGION, e.g. AWS_REGION=us-east-1")
	}
	desc := Description{Provider: Bedrock, Region: s.Region, Profile: s.Profile}
	if s.Static {
		if token := get("AWS_BEARER_TOKEN_BEDROCK"); token != "" {
			desc.From = "Bedrock API key (AWS_BEARER_TOKEN_BEDROCK)"
			return &staticSource{creds: Credentials{Bearer: token}, desc: desc}, nil
		}
		id, secret := get("AWS_ACCESS_KEY_ID"), get("AWS_SECRET_ACCESS_KEY")
		if id == "" || secret == "" {
			return nil, errors.New("Bedrock: the run's credentials came from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_BEARER_TOKEN_BEDROCK), which are not set here: export them again")
		}
		desc.From, desc.Identity = "static keys (AWS_ACCESS_KEY_ID)", id
		token := get("AWS_SESSION_TOKEN")
		if token != "" {
			// Their expiry is not said anywhere; they cannot be refreshed.
			desc.From = "session keys (AWS_ACCESS_KEY_ID, AWS_SESSION_TOKEN; expiry unknown, not refreshed)"
		}
		return &staticSource{creds: Credentials{AWS: &AWSCredentials{
			AccessKeyID: id, SecretAccessKey: secret, SessionToken: token,
		}}, desc: desc}, nil
	}

	ec2 := fw.onEC2()
	name := s.Profile
	if name == "" {
		name = "default"
	}
	home := get("HOME")
	cfgFile, credFile := tildify(s.ConfigFile, home), tildify(s.CredentialsFile, home)
	where := cfgFile + ", " + credFile
	sc, err := config.LoadSharedConfigProfile(ctx, name, func(o *config.LoadSharedConfigOptions) {
		o.ConfigFiles = []string{s.ConfigFile}
		o.CredentialsFiles = []string{s.CredentialsFile}
	})
	var notExist config.SharedConfigProfileNotExistError
	profileFound := err == nil
	switch {
	case errors.As(err, &notExist) && s.Profile != "":
		return nil, fmt.Errorf("Bedrock: AWS profile %s (AWS_PROFILE) is in neither %s: check the name, or run `aws configure --profile %s`", s.Profile, where, s.Profile)
	case errors.As(err, &notExist):
		sc = config.SharedConfig{}
	case err != nil:
		return nil, fmt.Errorf("Bedrock: read AWS profile %s (%s): %v", name, where, err)
	}
	kind, file := profileKind(sc), cfgFile
	if sc.Credentials.HasKeys() {
		file = credFile
	}
	switch {
	case kind != "":
		desc.From = fmt.Sprintf("profile %s in %s (%s)", name, file, kind)
	case get("AWS_WEB_IDENTITY_TOKEN_FILE") != "":
		desc.From = "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)"
	case get("AWS_CONTAINER_CREDENTIALS_FULL_URI") != "" || get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") != "":
		desc.From = "container credentials (AWS_CONTAINER_CREDENTIALS_*)"
	case ec2:
		desc.From = "EC2 instance role (instance metadata)"
	default:
		return nil, fmt.Errorf("Bedrock: no AWS credentials for profile %s (%s): run `aws configure --profile %s` or `aws sso login --profile %s`, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_BEARER_TOKEN_BEDROCK)", name, where, name, name)
	}

	opts := []func(*config.LoadOptions) error{
		config.WithRegion(s.Region),
		config.WithSharedConfigFiles([]string{s.ConfigFile}),
		config.WithSharedCredentialsFiles([]string{s.CredentialsFile}),
		config.WithCredentialsCacheOptions(func(o *aws.CredentialsCacheOptions) {
			o.ExpiryWindow = RefreshAhead
			o.ExpiryWindowJitterFrac = 0
		}),
	}
	// A profile named explicitly also makes the SDK ignore keys in this
	// process's environment: the run chose the profile. The default one is
	// named only when it exists, else the SDK would refuse to go on to
	// container or instance credentials.
	if s.Profile != "" || profileFound {
		opts = append(opts, config.WithSharedConfigProfile(name))
	}
	if !ec2 {
		// Off EC2, 169.254.169.254 is not Amazon's: never ask it.
		opts = append(opts, config.WithEC2IMDSClientEnableState(imds.ClientDisabled))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("Bedrock: load AWS profile %s (%s): %s", name, where, safeAWSError(err))
	}
	if cfg.Credentials == nil {
		return nil, fmt.Errorf("Bedrock: no AWS credentials for profile %s (%s)", name, where)
	}
	hint := fmt.Sprintf("check profile %s, or export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", name)
	if kind == "SSO" {
		hint = fmt.Sprintf("run `aws sso login --profile %s`, or export AWS_ACCESS_KEY_ID", name)
	}
	return &awsSource{provider: cfg.Credentials, desc: desc, hint: hint}, nil
}

// profileKind names how the SDK will get credentials for a profile, in the
// order it tries them; "" when the profile gives none.
func profileKind(sc config.SharedConfig) string {
	switch {
	case sc.RoleARN != "" && sc.SourceProfileName != "":
		return "assume role " + sc.RoleARN + " from profile " + sc.SourceProfileName
	case sc.RoleARN != "" && sc.CredentialSource != "":
		return "assume role " + sc.RoleARN + " with " + sc.CredentialSource
	case sc.RoleARN != "" && sc.WebIdentityTokenFile != "":
		return "assume role " + sc.RoleARN + " with web identity"
	case sc.Credentials.HasKeys():
		return "static keys"
	case sc.SSOSessionName != "" || sc.SSOStartURL != "":
		return "SSO"
	case sc.LoginSession != "":
		return "aws login"
	case sc.CredentialProcess != "":
		return "credential_process"
	}
	return ""
}

// safeAWSError keeps what the SDK says, except the output of a
// credential_process it could not parse, which may hold the secret.
func safeAWSError(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "process output:"); i >= 0 {
		return msg[:i] + "process output (not shown): it is not the JSON credential_process must print"
	}
	return msg
}

// awsSource fetches through the SDK's credentials cache, which refreshes
// RefreshAhead before expiry.
type awsSource struct {
	provider aws.CredentialsProvider
	hint     string

	mu   sync.Mutex
	desc Description
}

func (a *awsSource) Credentials(ctx context.Context) (Credentials, error) {
	c, err := a.provider.Retrieve(ctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		return Credentials{}, fmt.Errorf("Bedrock: no AWS credentials from %s: %s; %s", a.desc.From, safeAWSError(err), a.hint)
	}
	out := Credentials{AWS: &AWSCredentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}}
	if c.CanExpire {
		// The cache moved Expires earlier by its window; report the real time.
		out.Expires = c.Expires.Add(RefreshAhead)
	}
	a.desc.Identity, a.desc.Expires = c.AccessKeyID, out.Expires
	return out, nil
}

func (a *awsSource) Describe() Description {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.desc
}

// staticSource: credentials from variables; they do not expire.
type staticSource struct {
	creds Credentials
	desc  Description
}

func (s *staticSource) Credentials(context.Context) (Credentials, error) { return s.creds, nil }
func (s *staticSource) Describe() Description                            { return s.desc }
