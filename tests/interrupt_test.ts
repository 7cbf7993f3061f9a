// listenForStop: the first SIGINT or SIGTERM is a request the loop sees, the second quits.
const script = `
import { listenForStop } from ${
  JSON.stringify(new URL("../lib/train/interrupt.ts", import.meta.url).href)
};
const stop = listenForStop();
console.log("ready");
while (!stop.requested) await new Promise((r) => setTimeout(r, 10));
console.log("requested " + stop.requested);
stop.dispose();
if (Deno.args[0] === "wait") await new Promise((r) => setTimeout(r, 60_000));
`;

function assert(ok: unknown, msg: string): asserts ok {
  if (!ok) throw new Error(msg);
}

async function withChild(
  args: string[],
  signals: Deno.Signal[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", script, ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  while (!stdout.includes("ready")) {
    const { value, done } = await reader.read();
    if (done) break;
    stdout += value;
  }
  for (const s of signals) {
    child.kill(s);
    await new Promise((r) => setTimeout(r, 200));
  }
  const [status, err] = await Promise.all([
    child.status,
    new Response(child.stderr).text(),
    (async () => {
      for (let r = await reader.read(); !r.done; r = await reader.read()) stdout += r.value;
    })(),
  ]);
  return { code: status.code, stdout, stderr: err };
}

Deno.test("the first signal is a stop request the loop sees, with a message", async () => {
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    const r = await withChild([], [signal]);
    assert(r.code === 0, `${signal}: exit ${r.code}: ${r.stderr}`);
    assert(r.stdout.includes(`requested ${signal}`), `${signal}: ${r.stdout}`);
    assert(r.stderr.includes("stopping after this step"), `${signal}: ${r.stderr}`);
  }
});

Deno.test("a second signal quits at once", async () => {
  const script2 = script.replace("stop.dispose();", "");
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", script2, "wait"],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let stdout = "";
  while (!stdout.includes("ready")) stdout += (await reader.read()).value ?? "";
  child.kill("SIGINT");
  while (!stdout.includes("requested")) stdout += (await reader.read()).value ?? "";
  child.kill("SIGINT");
  const [status, err] = await Promise.all([child.status, new Response(child.stderr).text()]);
  await reader.cancel();
  assert(status.code === 130, `exit ${status.code}: ${err}`);
  assert(err.includes("quitting without saving"), err);
});
