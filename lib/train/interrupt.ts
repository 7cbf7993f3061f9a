// Graceful stop for long runs: the first SIGINT or SIGTERM asks the loop to finish its step,
// save and exit (the loop polls `requested`); a second one exits at once, losing the unsaved
// steps, for a run that is stuck.

const SIGNALS: Deno.Signal[] = ["SIGINT", "SIGTERM"];
const EXIT_CODE: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

export function listenForStop(): { readonly requested: string | null; dispose(): void } {
  let requested: string | null = null;
  const installed: [Deno.Signal, () => void][] = [];
  for (const signal of SIGNALS) {
    const onSignal = () => {
      if (requested === null) {
        requested = signal;
        console.error(
          `\n${signal}: stopping after this step and saving (send it again to quit without saving)`,
        );
        return;
      }
      console.error(`\n${signal} again: quitting without saving`);
      Deno.exit(EXIT_CODE[signal] ?? 1);
    };
    try {
      Deno.addSignalListener(signal, onSignal);
      installed.push([signal, onSignal]);
    } catch {
      // Windows has no SIGTERM; the run still stops on SIGINT.
    }
  }
  return {
    get requested() {
      return requested;
    },
    dispose() {
      for (const [signal, onSignal] of installed.splice(0)) {
        Deno.removeSignalListener(signal, onSignal);
      }
    },
  };
}
