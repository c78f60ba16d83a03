package demo

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Build is one run of a Jenkins job.
type Build struct {
	Number     int               `json:"number"`
	Result     string            `json:"result" jsonschema:"SUCCESS, FAILURE or ABORTED"`
	Cause      string            `json:"cause" jsonschema:"what started the build"`
	Started    string            `json:"started"`
	DurationMS int               `json:"duration_ms"`
	Parameters map[string]string `json:"parameters"`
}

type jenkinsBuild struct {
	Build
	log string
}

type jenkinsJob struct {
	name        string
	description string
	deploy      bool // a deployment job: started with trigger_deploy only
	builds      []*jenkinsBuild
}

type jenkins struct {
	mu   sync.Mutex
	jobs map[string]*jenkinsJob
}

// JobInfo describes a job and its recent builds.
type JobInfo struct {
	Name         string  `json:"name"`
	Description  string  `json:"description"`
	Kind         string  `json:"kind" jsonschema:"build or deploy"`
	LastBuild    int     `json:"last_build" jsonschema:"number of the latest build, 0 if none"`
	LastResult   string  `json:"last_result"`
	RecentBuilds []Build `json:"recent_builds" jsonschema:"up to five latest builds, newest first"`
}

type ListJobsArgs struct{}

type ListJobsOutput struct {
	Jobs []JobInfo `json:"jobs"`
}

type GetBuildLogArgs struct {
	Job   string `json:"job" jsonschema:"job name, e.g. build-api or credentials/aws-rotate"`
	Build int    `json:"build,omitempty" jsonschema:"build number; the latest build when omitted"`
}

type GetBuildLogOutput struct {
	Job   string `json:"job"`
	Build Build  `json:"build"`
	Log   string `json:"log"`
}

type TriggerBuildArgs struct {
	Job        string            `json:"job" jsonschema:"job name (not a deployment job)"`
	Parameters map[string]string `json:"parameters,omitempty" jsonschema:"build parameters, e.g. {\"BRANCH\": \"main\"}"`
}

type TriggerDeployArgs struct {
	Job         string `json:"job" jsonschema:"deployment job name, e.g. deploy-prod"`
	Environment string `json:"environment" jsonschema:"target environment: staging or production"`
}

type DeleteJobArgs struct {
	Job string `json:"job" jsonschema:"job name to delete with all its builds"`
}

type DeleteJobOutput struct {
	Job           string `json:"job"`
	BuildsDeleted int    `json:"builds_deleted"`
}

type TriggerOutput struct {
	Job   string `json:"job"`
	Build Build  `json:"build"`
	Log   string `json:"log"`
}

var deployEnvironments = []string{"staging", "production"}

func newJenkinsServer() *mcp.Server {
	j := &jenkins{jobs: map[string]*jenkinsJob{}}
	for _, job := range seedJenkins() {
		j.jobs[job.name] = job
	}
	s := newServer("jenkins", "Demo Jenkins",
		"A CI server. Jobs: build-api, build-web, nightly-tests, credentials/aws-rotate (build jobs) and deploy-prod (a deployment job, started with trigger_deploy).")
	mcp.AddTool(s, &mcp.Tool{
		Name:        "list_jobs",
		Description: "List the jobs with their latest builds.",
		Annotations: readOnly("List jobs"),
	}, j.listJobs)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "get_build_log",
		Description: "Get the console log of a build (the latest build when no number is given).",
		Annotations: readOnly("Get build log"),
	}, j.getBuildLog)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "trigger_build",
		Description: "Start a build of a (non-deployment) job with optional parameters. The demo runs it to completion at once.",
		Annotations: writes("Trigger build", false, false),
	}, j.triggerBuild)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "trigger_deploy",
		Description: "Start a deployment job for an environment (staging or production).",
		Annotations: writes("Trigger deploy", true, false),
	}, j.triggerDeploy)
	// delete_job is the tool "added last week": the shipped policy's
	// catalogue does not list it, so no agent reaches it until someone
	// reviews it (failure mode 4 of DESIGN.md).
	mcp.AddTool(s, &mcp.Tool{
		Name:        "delete_job",
		Description: "Delete a job and its build history. Cannot be undone.",
		Annotations: writes("Delete job", true, true),
	}, j.deleteJob)
	return s
}

func (job *jenkinsJob) kind() string {
	if job.deploy {
		return "deploy"
	}
	return "build"
}

func (b *jenkinsBuild) public() Build {
	c := b.Build
	c.Parameters = maps.Clone(b.Parameters)
	if c.Parameters == nil {
		c.Parameters = map[string]string{}
	}
	return c
}

// job finds a job by name; j.mu must be held.
func (j *jenkins) job(name string) (*jenkinsJob, error) {
	if err := required("job", name); err != nil {
		return nil, err
	}
	job, ok := j.jobs[strings.Trim(strings.TrimSpace(name), "/")]
	if !ok {
		return nil, fmt.Errorf("job %q does not exist (jobs: %s)", name, strings.Join(slices.Sorted(maps.Keys(j.jobs)), ", "))
	}
	return job, nil
}

func (j *jenkins) listJobs(_ context.Context, _ *mcp.CallToolRequest, _ ListJobsArgs) (*mcp.CallToolResult, ListJobsOutput, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := ListJobsOutput{Jobs: []JobInfo{}}
	lines := []string{fmt.Sprintf("%d job(s):", len(j.jobs))}
	for _, name := range slices.Sorted(maps.Keys(j.jobs)) {
		job := j.jobs[name]
		ji := JobInfo{Name: name, Description: job.description, Kind: job.kind(), LastResult: "NOT_BUILT", RecentBuilds: []Build{}}
		for i := len(job.builds) - 1; i >= 0 && len(ji.RecentBuilds) < 5; i-- {
			ji.RecentBuilds = append(ji.RecentBuilds, job.builds[i].public())
		}
		if n := len(job.builds); n > 0 {
			ji.LastBuild, ji.LastResult = job.builds[n-1].Number, job.builds[n-1].Result
		}
		out.Jobs = append(out.Jobs, ji)
		lines = append(lines, fmt.Sprintf("  %s (%s): last build #%d %s - %s", ji.Name, ji.Kind, ji.LastBuild, ji.LastResult, ji.Description))
	}
	return textLines(lines), out, nil
}

func (j *jenkins) getBuildLog(_ context.Context, _ *mcp.CallToolRequest, in GetBuildLogArgs) (*mcp.CallToolResult, GetBuildLogOutput, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	job, err := j.job(in.Job)
	if err != nil {
		return nil, GetBuildLogOutput{}, err
	}
	if len(job.builds) == 0 {
		return nil, GetBuildLogOutput{}, fmt.Errorf("job %s has no builds yet", job.name)
	}
	b := job.builds[len(job.builds)-1]
	if in.Build != 0 {
		i := slices.IndexFunc(job.builds, func(b *jenkinsBuild) bool { return b.Number == in.Build })
		if i < 0 {
			return nil, GetBuildLogOutput{}, fmt.Errorf("job %s has no build #%d (builds #%d-#%d)", job.name, in.Build, job.builds[0].Number, b.Number)
		}
		b = job.builds[i]
	}
	out := GetBuildLogOutput{Job: job.name, Build: b.public(), Log: b.log}
	return textResult("%s #%d %s (%s)\n\n%s", job.name, b.Number, b.Result, b.Cause, b.log), out, nil
}

// run appends a build of job that completes at once; j.mu must be held.
func (j *jenkins) run(job *jenkinsJob, cause string, params map[string]string) *jenkinsBuild {
	n := 1
	if len(job.builds) > 0 {
		n = job.builds[len(job.builds)-1].Number + 1
	}
	b := &jenkinsBuild{Build: Build{Number: n, Result: "SUCCESS", Cause: cause, Started: now(), DurationMS: 1000 * (30 + 7*len(job.name)), Parameters: maps.Clone(params)}}
	if b.Parameters == nil {
		b.Parameters = map[string]string{}
	}
	var lg strings.Builder
	fmt.Fprintf(&lg, "Started by %s\nRunning on agent-linux-1 in /var/jenkins/workspace/%s\n", cause, job.name)
	for _, k := range slices.Sorted(maps.Keys(b.Parameters)) {
		fmt.Fprintf(&lg, "[param] %s=%s\n", k, b.Parameters[k])
	}
	switch {
	case job.deploy:
		fmt.Fprintf(&lg, "Deploying to %s...\nhelm upgrade --install api ./chart --namespace %s\nRollout complete.\n", b.Parameters["ENVIRONMENT"], b.Parameters["ENVIRONMENT"])
	case job.name == "credentials/aws-rotate":
		lg.WriteString("Creating new access key for iam user app-prod...\nStoring key in vault path secret/prod/aws (value ****)\nDeactivating previous key ****FAKE\n")
	default:
		lg.WriteString("+ make test\nok   all packages\n+ make build\nArtifacts archived.\n")
	}
	fmt.Fprintf(&lg, "Finished: %s\n", b.Result)
	b.log = lg.String()
	job.builds = append(job.builds, b)
	return b
}

func (j *jenkins) triggerBuild(_ context.Context, _ *mcp.CallToolRequest, in TriggerBuildArgs) (*mcp.CallToolResult, TriggerOutput, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	job, err := j.job(in.Job)
	if err != nil {
		return nil, TriggerOutput{}, err
	}
	if job.deploy {
		return nil, TriggerOutput{}, fmt.Errorf("%s is a deployment job: start it with trigger_deploy", job.name)
	}
	for k := range in.Parameters {
		if strings.TrimSpace(k) == "" {
			return nil, TriggerOutput{}, fmt.Errorf("build parameter names must not be empty")
		}
	}
	b := j.run(job, "remote API call ("+agentUser+")", in.Parameters)
	out := TriggerOutput{Job: job.name, Build: b.public(), Log: b.log}
	return textResult("Started %s #%d: %s.", job.name, b.Number, b.Result), out, nil
}

func (j *jenkins) triggerDeploy(_ context.Context, _ *mcp.CallToolRequest, in TriggerDeployArgs) (*mcp.CallToolResult, TriggerOutput, error) {
	env := strings.ToLower(strings.TrimSpace(in.Environment))
	if !slices.Contains(deployEnvironments, env) {
		return nil, TriggerOutput{}, fmt.Errorf("environment %q is not valid: use staging or production", in.Environment)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	job, err := j.job(in.Job)
	if err != nil {
		return nil, TriggerOutput{}, err
	}
	if !job.deploy {
		return nil, TriggerOutput{}, fmt.Errorf("%s is not a deployment job: start it with trigger_build", job.name)
	}
	b := j.run(job, "remote API call ("+agentUser+")", map[string]string{"ENVIRONMENT": env})
	out := TriggerOutput{Job: job.name, Build: b.public(), Log: b.log}
	return textResult("Started %s #%d to %s: %s.", job.name, b.Number, env, b.Result), out, nil
}

func (j *jenkins) deleteJob(_ context.Context, _ *mcp.CallToolRequest, in DeleteJobArgs) (*mcp.CallToolResult, DeleteJobOutput, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	job, err := j.job(in.Job)
	if err != nil {
		return nil, DeleteJobOutput{}, err
	}
	delete(j.jobs, job.name)
	out := DeleteJobOutput{Job: job.name, BuildsDeleted: len(job.builds)}
	return textResult("Deleted %s and %d build(s).", job.name, out.BuildsDeleted), out, nil
}

func seedJenkins() []*jenkinsJob {
	build := func(n int, result, cause, started string, dur int, params map[string]string, log string) *jenkinsBuild {
		if params == nil {
			params = map[string]string{}
		}
		return &jenkinsBuild{Build: Build{Number: n, Result: result, Cause: cause, Started: started, DurationMS: dur, Parameters: params}, log: log}
	}
	return []*jenkinsJob{
		{name: "build-api", description: "Build and test platform/api", builds: []*jenkinsBuild{
			build(131, "SUCCESS", "push to main by alice", "2025-09-09T16:40:00Z", 182000, map[string]string{"BRANCH": "main"},
				"Started by push to main by alice\n+ go test ./...\nok   all packages\n+ go build ./cmd/api\nFinished: SUCCESS\n"),
			build(132, "FAILURE", "merge request platform/api!7", "2025-09-10T10:05:00Z", 95000, map[string]string{"BRANCH": "feature/rate-limit"},
				"Started by merge request platform/api!7\n+ go test ./...\n--- FAIL: TestRateLimit (0.02s)\n    limiter_test.go:41: want 429, got 200\nFinished: FAILURE\n"),
		}},
		{name: "build-web", description: "Build and lint platform/web", builds: []*jenkinsBuild{
			build(88, "FAILURE", "timer (nightly)", "2025-09-10T02:00:00Z", 64000, nil,
				"Started by timer (nightly)\n+ npm run lint\nsrc/Dashboard.tsx:12:5 error no-unused-vars\nFinished: FAILURE\n"),
			build(89, "SUCCESS", "push to main by bob", "2025-09-10T09:45:00Z", 121000, map[string]string{"BRANCH": "main"},
				"Started by push to main by bob\n+ npm run lint\n+ npm run build\nFinished: SUCCESS\n"),
		}},
		{name: "deploy-prod", description: "Deploy platform/api to an environment (deployment job)", deploy: true, builds: []*jenkinsBuild{
			build(41, "SUCCESS", "user alice", "2025-09-09T17:00:00Z", 240000, map[string]string{"ENVIRONMENT": "production"},
				"Started by user alice\nDeploying to production...\nhelm upgrade --install api ./chart --namespace production\nRollout complete.\nFinished: SUCCESS\n"),
		}},
		{name: "credentials/aws-rotate", description: "Rotate the production AWS access key (touches production credentials)", builds: []*jenkinsBuild{
			build(7, "SUCCESS", "user alice", "2025-09-01T06:00:00Z", 45000, nil,
				"Started by user alice\nCreating new access key for iam user app-prod...\nStoring key in vault path secret/prod/aws (value ****)\nDeactivating previous key ****FAKE\nFinished: SUCCESS\n"),
		}},
		{name: "nightly-tests", description: "Integration tests against staging", builds: []*jenkinsBuild{
			build(300, "SUCCESS", "timer (nightly)", "2025-09-09T01:00:00Z", 900000, nil,
				"Started by timer (nightly)\n+ make integration\nPASS 412 tests\nFinished: SUCCESS\n"),
			build(301, "SUCCESS", "timer (nightly)", "2025-09-10T01:00:00Z", 912000, nil,
				"Started by timer (nightly)\n+ make integration\nPASS 414 tests\nFinished: SUCCESS\n"),
		}},
	}
}
