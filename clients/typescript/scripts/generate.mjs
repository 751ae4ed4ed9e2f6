// Generate src/gen/ from the API protos with buf and the local ts-proto plugin (buf.gen.yaml).
//
// buf is the one of the project's Python environment (PyPI buf-bin, pinned in uv.lock) and the
// google/api and google/rpc protos are those of its googleapis-common-protos package, gathered
// into build/proto-deps by scripts/protos.py; run `./dev` once (or inside `./dev run`).
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../../..");
const venv = join(root, ".venv", "bin");
const tool = (name) => (existsSync(join(venv, name)) ? join(venv, name) : name);

function run(command, args) {
  const done = spawnSync(command, args, { cwd: root, stdio: "inherit" });
  if (done.error) throw done.error;
  if (done.status !== 0) process.exit(done.status ?? 1);
}

run(tool("python"), [
  "-c",
  "import sys; sys.path.insert(0, 'scripts'); import protos; protos.gather_deps()",
]);
rmSync(join(here, "..", "src", "gen"), { recursive: true, force: true });
run(tool("buf"), ["generate", "--template", "clients/typescript/buf.gen.yaml"]);

// ChannelService has an RPC named GetChannel, and ts-proto's grpc-js clients extend grpc-js's
// `Client`, whose `getChannel()` returns the channel: at run time the RPC wins (grpc-js assigns
// the methods on the prototype), but the generated interface no longer type-checks. Drop the
// clashing members of `Client` from the interface so it says what the object does.
const CLIENT_MEMBERS = ["close", "getChannel", "waitForReady"];
for (const file of readdirSync(join(here, "..", "src", "gen"), { recursive: true })) {
  if (!file.endsWith(".ts")) continue;
  const path = join(here, "..", "src", "gen", file);
  const source = readFileSync(path, "utf8");
  const fixed = source.replace(
    /export interface (\w+Client) extends Client \{([\s\S]*?)\n\}/g,
    (whole, name, body) => {
      const clashes = CLIENT_MEMBERS.filter((m) => new RegExp(`^  ${m}\\(`, "m").test(body));
      if (clashes.length === 0) return whole;
      const omitted = clashes.map((m) => JSON.stringify(m)).join(" | ");
      return `export interface ${name} extends Omit<Client, ${omitted}> {${body}\n}`;
    },
  );
  if (fixed !== source) writeFileSync(path, fixed);
}
