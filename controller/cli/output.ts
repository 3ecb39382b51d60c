// Commands write through an Output so that tests can run them in process and read what they said.
export interface Output {
  out(text: string): void;
  err(text: string): void;
}

export interface CommandResult {
  exitCode: number;
}

export const processOutput: Output = {
  out: (text) => process.stdout.write(text),
  err: (text) => process.stderr.write(text),
};
