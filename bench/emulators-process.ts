/**
 * The local emulators (S3, DynamoDB, SES) in a process of their own, for benchmarks that measure
 * a stage's CPU without the emulators' (bench/fanout-stage.ts). Prints one JSON line (env, bucket,
 * table) once they listen; stops them on SIGTERM.
 *
 *   npx tsx bench/emulators-process.ts DATA_DIR
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
import { startEmulators } from '../local/emulators';

const dataDir = process.argv[2];
if (!dataDir) throw new Error('usage: emulators-process.ts DATA_DIR');
const emulators = await startEmulators({ dataDir });
process.once('SIGTERM', () => {
  void emulators.stop().then(() => process.exit(0));
});
console.log(JSON.stringify({ env: emulators.env, bucket: emulators.bucket, table: emulators.table }));
