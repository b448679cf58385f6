package workspace

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/airlock-dev/airlock/internal/untrusted"
)

// Files the harvest script writes to its output directory.
const (
	BundleFile  = "run.bundle"
	HarvestFile = "harvest.json"
)

// Harvest is what the harvest script reports in harvest.json. The copy was
// under the agent's control, so treat every field as a claim: Import checks
// the bundle itself.
type Harvest struct {
	Head        string `json:"head"`        // tip of airlock/<id> in the copy; "" when lost
	Uncommitted string `json:"uncommitted"` // snapshot commit of uncommitted work, or ""
	Error       string `json:"error"`       // why the work (or the snapshot) could not be harvested
}

// Lost reports whether nothing could be harvested: the copy's .git or its
// branch was gone. The user's repository is unaffected either way.
func (h Harvest) Lost() bool { return h.Head == "" }

// ReadHarvest reads harvest.json from the harvest output directory.
func ReadHarvest(outDir string) (Harvest, error) {
	path := filepath.Join(outDir, HarvestFile)
	f, err := openRegular(path)
	if err != nil {
		return Harvest{}, fmt.Errorf("read harvest report: %w", err)
	}
	defer f.Close()
	var h Harvest
	if err := json.NewDecoder(io.LimitReader(f, 64<<10)).Decode(&h); err != nil {
		return Harvest{}, fmt.Errorf("read harvest report %s: %w", path, err)
	}
	if (h.Head != "" && !hexSHA.MatchString(h.Head)) || (h.Uncommitted != "" && !hexSHA.MatchString(h.Uncommitted)) {
		return Harvest{}, fmt.Errorf("read harvest report %s: malformed commit id", path)
	}
	return h, nil
}

// openRegular opens path only if it is a regular file: the output directory
// was writable from a container, which could have left a symlink to a host
// file or a FIFO that blocks forever.
func openRegular(path string) (*os.File, error) {
	return untrusted.Open(path)
}

// HarvestScript returns a POSIX sh script that, run inside a sandbox
// container with the copy at /workspace and a writable /airlock/out, bundles
// the agent's work on branch (plus a snapshot commit of any uncommitted
// changes) into /airlock/out/run.bundle and reports in
// /airlock/out/harvest.json. It always exits 0 once it could write the
// report; a missing .git or branch is reported, not fatal.
//
// exclude lists commits the user's repository already has (the run's base
// commit): the bundle then leaves out their history, which keeps it small.
// Invalid commit ids are ignored.
//
// The copy's configuration is hostile. The script runs git with hooks,
// fsmonitor, pagers, external diff, signing and every configured filter
// driver switched off (via GIT_CONFIG_COUNT, which outranks the repository's
// config); it runs in the sandbox anyway, so this is depth, not the boundary.
// The boundary is Import, which trusts nothing in the bundle but its refs.
//
// AIRLOCK_WORKSPACE and AIRLOCK_OUT override the two paths (for tests).
func HarvestScript(branch string, exclude ...string) string {
	var ex []string
	for _, c := range exclude {
		if hexSHA.MatchString(c) {
			ex = append(ex, c)
		}
	}
	return strings.NewReplacer(
		"@BRANCH@", shellQuote(branch),
		"@EXCLUDE@", shellQuote(strings.Join(ex, " ")),
		"@SNAPREF@", snapshotRef,
	).Replace(harvestScript)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

const harvestScript = `set -u
ws=${AIRLOCK_WORKSPACE:-/workspace}
out=${AIRLOCK_OUT:-/airlock/out}
branch=@BRANCH@
exclude=@EXCLUDE@
ref="refs/heads/$branch"
snapref=@SNAPREF@

jstr() {
	if [ -z "$1" ]; then printf null; return; fi
	printf '"%s"' "$(printf '%s' "$1" | tr '\n\r\t' '   ' | tr -d '\000-\037' | sed 's/\\/\\\\/g; s/"/\\"/g')"
}
report() { # head uncommitted error
	{ printf '{"head":'; jstr "$1"; printf ',"uncommitted":'; jstr "$2"; printf ',"error":'; jstr "$3"; printf '}\n'; } >"$out/harvest.json.tmp" &&
		mv -f "$out/harvest.json.tmp" "$out/harvest.json"
}
fail() { rm -f "$out/run.bundle.tmp" "$out/index.tmp"; report "" "" "$1"; exit 0; }

rm -f "$out/run.bundle" "$out/run.bundle.tmp" "$out/harvest.json" "$out/index.tmp"

unset GIT_DIR GIT_WORK_TREE GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES \
	GIT_COMMON_DIR GIT_NAMESPACE GIT_CONFIG GIT_CONFIG_PARAMETERS GIT_EXTERNAL_DIFF GIT_SSH GIT_SSH_COMMAND \
	GIT_ASKPASS GIT_EDITOR GIT_PAGER GIT_TRACE GIT_TRACE2
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null GIT_TERMINAL_PROMPT=0 LC_ALL=C GIT_OPTIONAL_LOCKS=0
n=0
cfg() {
	eval "GIT_CONFIG_KEY_$n=\$1 GIT_CONFIG_VALUE_$n=\$2; export GIT_CONFIG_KEY_$n GIT_CONFIG_VALUE_$n"
	n=$((n + 1))
	GIT_CONFIG_COUNT=$n
	export GIT_CONFIG_COUNT
}
cfg core.hooksPath /dev/null
cfg core.fsmonitor false
cfg core.untrackedCache false
cfg core.pager cat
cfg core.sshCommand false
cfg core.askPass false
cfg core.editor false
cfg diff.external ""
cfg commit.gpgSign false
cfg gpg.program false
cfg credential.helper ""
cfg protocol.allow never
cfg gc.auto 0
cfg maintenance.auto false
cfg safe.directory '*'

cd "$ws" 2>/dev/null || fail "the copy at $ws is gone: the run's work is lost (your repository is unaffected)"
[ -e .git ] || fail "the copy's .git is gone: the run's work is lost (your repository is unaffected)"
export GIT_DIR="$ws/.git" GIT_WORK_TREE="$ws"

# Filter drivers run commands on file contents; neutralise every one the
# copy's config defines (includes are followed by git config).
git config --name-only --get-regexp '^filter\.' >"$out/filters.tmp" 2>/dev/null
while IFS= read -r k; do
	case $k in
	*.clean | *.smudge | *.process) cfg "$k" "" ;;
	*.required) cfg "$k" false ;;
	esac
done <"$out/filters.tmp"
rm -f "$out/filters.tmp"

head=$(git rev-parse --verify -q "$ref^{commit}" 2>/dev/null) ||
	fail "branch $branch is missing in the copy: the run's work is lost (your repository is unaffected)"
case $head in *[!0-9a-f]* | '') fail "branch $branch does not name a commit" ;; esac

name=$(git config user.name 2>/dev/null) || name=
email=$(git config user.email 2>/dev/null) || email=
GIT_AUTHOR_NAME=${name:-airlock agent} GIT_AUTHOR_EMAIL=${email:-agent@airlock.invalid}
GIT_COMMITTER_NAME=$GIT_AUTHOR_NAME GIT_COMMITTER_EMAIL=$GIT_AUTHOR_EMAIL
export GIT_AUTHOR_NAME GIT_AUTHOR_EMAIL GIT_COMMITTER_NAME GIT_COMMITTER_EMAIL

# Our refs only: drop whatever the agent put under refs/airlock/.
git for-each-ref --format='%(refname)' refs/airlock/ 2>/dev/null | while IFS= read -r r; do
	git update-ref -d "$r" >/dev/null 2>&1
done

# Snapshot: the work tree as the agent left it (respecting .gitignore), as a
# commit on top of the branch head, built in a private index so the copy's
# own index and refs stay as they were.
snap= snaperr=
idx="$out/index.tmp"
# -p: the copy keeps the index's mtime, which git compares with each entry's
# to tell a file changed in the same second as the index was written (and
# of the same size) from an unchanged one; a fresh mtime would hide it.
cp -p "$GIT_DIR/index" "$idx" 2>/dev/null || rm -f "$idx"
if ! err=$(
	{ GIT_INDEX_FILE=$idx git read-tree -m "$head" 2>/dev/null || { rm -f "$idx" && GIT_INDEX_FILE=$idx git read-tree "$head"; }; } &&
		GIT_INDEX_FILE=$idx git add -A -- . 2>&1 >/dev/null &&
		tree=$(GIT_INDEX_FILE=$idx git write-tree) &&
		if [ "$tree" != "$(git rev-parse "$head^{tree}")" ]; then
			c=$(printf 'airlock: uncommitted changes left by the agent\n' | git commit-tree --no-gpg-sign "$tree" -p "$head") &&
				git update-ref "$snapref" "$c" && echo "snap=$c"
		fi 2>&1
); then
	snaperr="could not snapshot uncommitted changes: $err"
else
	case $err in *snap=*) snap=${err##*snap=} ;; esac
	case $snap in *[!0-9a-f]*) snaperr="could not snapshot uncommitted changes: $err"; snap= ;; esac
fi
rm -f "$idx"

set -- "$ref"
[ -n "$snap" ] && set -- "$@" "$snapref"
for x in $exclude; do
	# Exclude the base's parents, not the base: a run without commits would
	# otherwise make an empty bundle, which git refuses.
	for p in $(git rev-parse "$x^@" 2>/dev/null); do
		case $p in *[!0-9a-f]* | '') ;; *) set -- "$@" "^$p" ;; esac
	done
done
if ! err=$(git bundle create -q "$out/run.bundle.tmp" "$@" 2>&1); then
	fail "git bundle create: $err"
fi
mv -f "$out/run.bundle.tmp" "$out/run.bundle" || fail "could not write $out/run.bundle"
report "$head" "$snap" "$snaperr"
exit 0
`
