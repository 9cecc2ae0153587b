// A TypeScript function with steps, a sleep and a wait (inngest 3.x), for the HTTP worker's tests.
import { Inngest } from "inngest";

export const inngest = new Inngest({ id: "ts-steps" });

export const onboarding = inngest.createFunction(
  {
    id: "onboarding",
    retries: 2,
    cancelOn: [{ event: "user/deleted", if: "async.data.userId == event.data.userId" }],
  },
  { event: "user/signed.up" },
  async ({ event, step }) => {
    const user = await step.run("load-user", async () => ({ id: event.data.userId, plan: "free" }));
    await step.sleep("pause", event.data.sleep ?? "1s");
    const [a, b] = await Promise.all([
      step.run("left", () => `${user.id}-left`),
      step.run("right", () => `${user.id}-right`),
    ]);
    const upgraded = await step.waitForEvent("wait-upgrade", {
      event: "user/upgraded", timeout: event.data.waitFor ?? "5s", if: "async.data.userId == event.data.userId",
    });
    return { user, a, b, upgraded: upgraded ? upgraded.data : null };
  }
);

// One step that does nothing: bench/http_apps.py measures what a step costs over HTTP.
export const oneStep = inngest.createFunction(
  { id: "one-step" },
  { event: "bench/one-step" },
  async ({ step }) => step.run("only", () => 1),
);
