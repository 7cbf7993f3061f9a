// A test hook for crash safety: with VMAMBAR_KILL_AT=n in the environment, the process kills
// itself with SIGKILL at the n-th point where a file write could be cut short, so a test can
// prove that a run resumes whichever write a crash interrupts.

let killAt = 0;
try {
  killAt = Number(Deno.env.get("VMAMBAR_KILL_AT") ?? 0) || 0;
} catch {
  // No --allow-env: the hook is off.
}
let reached = 0;

/** Marks a point between two steps of a write; `what` names it in the message before dying. */
export function killPoint(what: string): void {
  if (killAt <= 0 || ++reached !== killAt) return;
  console.error(`VMAMBAR_KILL_AT=${killAt}: killed at ${what}`);
  Deno.kill(Deno.pid, "SIGKILL");
}
