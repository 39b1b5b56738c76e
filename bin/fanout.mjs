#!/usr/bin/env node
// The `fanout` command: loads the TypeScript CLI through tsx (no build step).
import { register } from 'tsx/esm/api';

// The SDK warns on every Node 20 process that its support ends in 2027; the README says so once.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

register();
const { main } = await import('./fanout-cli.ts');
process.exitCode = await main(process.argv.slice(2));
