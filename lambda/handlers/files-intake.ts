/**
 * What an object arriving in a `files` pipeline's intake folder means: a `.zip` of files or a
 * `.txt` manifest of keys starts a run; a file that an SFTP pull copied into the folder of one of
 * the pipeline's sources (`intake/<pipeline>/<source>/...`) is part of that pull's batch, whose
 * manifest starts the run; anything else is refused with what to upload instead.
 */
import type { AppConfig } from '../../runtime/config/schema';

export const FILES_EXTENSIONS = ['.zip', '.txt'] as const;

export function filesIntake(config: AppConfig, pipeline: string, key: string): { ignore?: string; rejection?: string } {
  for (const s of config.sources) {
    if (s.pipeline === pipeline && key.startsWith(`intake/${pipeline}/${s.name}/`)) {
      return { ignore: `${key} was pulled from source ${s.name}; its pull's manifest starts the run` };
    }
  }
  const name = key.split('/').pop() ?? key;
  const ext = /\.[^./]+$/.exec(name)?.[0]?.toLowerCase() ?? '';
  if ((FILES_EXTENSIONS as readonly string[]).includes(ext)) return {};
  return {
    rejection: `${name} cannot start a run of the ${pipeline} pipeline, which converts files in batches. Upload a .zip of the files, or a .txt manifest listing their keys under intake/${pipeline}/, one per line.`,
  };
}
