// Serves the seed on inngest 4.x over HTTP with the SDK's own Node handler: `tsx serve.ts seed`.
// The SDK reads INNGEST_DEV and INNGEST_BASE_URL (this runtime's API) from the environment.
import { createServer } from "node:http";
import { serve } from "inngest/node";

const which = process.argv[2] ?? "seed";
const mod = await import("./seed.ts");
const functions = Object.values(mod).filter((v: any) => v && typeof v === "object" && "opts" in v && v !== mod.inngest);
const port = Number(process.env.PORT ?? 3000);
createServer(serve({ client: mod.inngest, functions: functions as any })).listen(port, "127.0.0.1", () => {
  console.log(`serving ${which} (${functions.length} functions) on ${port}`);
});
