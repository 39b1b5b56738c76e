#!/usr/bin/env node
// The `fanout` command: loads the TypeScript CLI through tsx (no build step).
import { register } from 'tsx/esm/api';

register();
const { main } = await import('./fanout-cli.ts');
process.exitCode = await main(process.argv.slice(2));
