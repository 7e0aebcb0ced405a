// The benches' command line: `--name value` options and `--name` flags, read from process.argv.

const args = process.argv.slice(2);

/** The value after `--name`, or `fallback` when the option is absent. */
export function opt(name: string, fallback: string): string {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
}

/** Whether `--name` is present. */
export function flag(name: string): boolean {
  return args.includes(`--${name}`);
}
