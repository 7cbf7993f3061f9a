export * from "./device.ts";
export * from "./pool.ts";
export * from "./pipelines.ts";
export * from "./recorder.ts";
