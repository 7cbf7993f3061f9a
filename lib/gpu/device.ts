// One WebGPU device per process: the adapter's best limits, shader-f16 and subgroups when present.
import { UserError } from "../errors.ts";

export interface Gpu {
  device: GPUDevice;
  /** shader-f16 granted: kernels may use `enable f16;`. */
  f16: boolean;
  /** subgroups granted: kernels may use subgroup builtins (without `enable subgroups;`). */
  subgroups: boolean;
  /** timestamp-query granted: the recorder can time each dispatch (startGpuProfile). */
  timestamps: boolean;
  limits: GPUSupportedLimits;
  /** Adapter description, e.g. "NVIDIA H100 80GB HBM3" or "llvmpipe (LLVM 15.0.6, 256 bits)". */
  name: string;
  /** A software rasteriser (Mesa llvmpipe/lavapipe): about 3 GFLOP/s, so keep shapes small. */
  isCpu: boolean;
}

let current: Gpu | null = null;
let pending: Promise<Gpu> | null = null;

const NO_ADAPTER = "no WebGPU adapter found: install a GPU driver with Vulkan support, or Mesa's " +
  "CPU driver (`apt-get install mesa-vulkan-drivers`, then set DENO_WEBGPU_BACKEND=vulkan)";

async function requestDevice(adapter: GPUAdapter, features: GPUFeatureName[]) {
  const l = adapter.limits;
  return await adapter.requestDevice({
    requiredFeatures: features,
    requiredLimits: {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupSizeY: l.maxComputeWorkgroupSizeY,
      maxStorageBuffersPerShaderStage: l.maxStorageBuffersPerShaderStage,
    },
  });
}

/**
 * Mesa's Vulkan drivers print "XDG_RUNTIME_DIR is invalid or not set" (twice) when it is unset,
 * as on a server or in a container: give them a private folder first.
 */
function ensureRuntimeDir(): void {
  try {
    if (Deno.build.os !== "linux" || Deno.env.get("XDG_RUNTIME_DIR")) return;
    const tmp = Deno.env.get("TMPDIR") || "/tmp";
    const dir = `${tmp}/vmambar-runtime-${Deno.uid() ?? "user"}`;
    Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
    Deno.env.set("XDG_RUNTIME_DIR", dir);
  } catch {
    // Without env or write permission the warning stays; nothing else depends on it.
  }
}

async function open(): Promise<Gpu> {
  ensureRuntimeDir();
  if (!("gpu" in navigator) || !navigator.gpu) throw new UserError(NO_ADAPTER);
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) throw new UserError(NO_ADAPTER);
  const env = (k: string) => Deno.env.get(k) ?? "";
  const wantF16 = adapter.features.has("shader-f16") && env("VMAMBAR_NO_F16") !== "1";
  const wantSubgroups = env("VMAMBAR_NO_SUBGROUPS") !== "1";
  // `subgroups` is often missing from adapter.features although the device grants it: ask, and
  // fall back without it when the request is refused.
  const base: GPUFeatureName[] = wantF16 ? ["shader-f16"] : [];
  if (adapter.features.has("timestamp-query")) base.push("timestamp-query");
  let device: GPUDevice;
  let subgroups = false;
  try {
    device = await requestDevice(
      adapter,
      wantSubgroups ? [...base, "subgroups" as GPUFeatureName] : base,
    );
    subgroups = wantSubgroups;
  } catch {
    device = await requestDevice(adapter, base);
  }
  // Validation errors are bugs; WebGPU reports them asynchronously and otherwise silently drops
  // the offending command, so say each one loudly.
  device.addEventListener("uncapturederror", (e) => {
    console.error(`vmambar: WebGPU error: ${(e as GPUUncapturedErrorEvent).error.message}`);
  });
  device.lost.then((info) => {
    if (info.reason !== "destroyed") console.error(`vmambar: GPU device lost: ${info.message}`);
  });
  const info = adapter.info;
  const name = info.description || `${info.vendor} ${info.device}`.trim();
  return {
    device,
    f16: device.features.has("shader-f16"),
    subgroups: subgroups && device.features.has("subgroups" as GPUFeatureName),
    timestamps: device.features.has("timestamp-query"),
    limits: device.limits,
    name,
    isCpu: info.isFallbackAdapter || /llvmpipe|lavapipe|swiftshader|softpipe/i.test(name),
  };
}

/** Opens the process's device once; later calls return the same one. */
export function initGpu(): Promise<Gpu> {
  pending ??= open().then((g) => (current = g));
  return pending;
}

/** Whether initGpu has finished (gpu() would return the device). */
export function gpuStarted(): boolean {
  return current !== null;
}

/** The device opened by initGpu(); ops are synchronous, so they need it opened first. */
export function gpu(): Gpu {
  if (!current) throw new Error("GPU not initialised: await initGpu() first");
  return current;
}
