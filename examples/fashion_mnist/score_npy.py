#!/usr/bin/python3
"""Scores the cells skipstep_fashion_mnist --dump-npy DIR wrote, in Python: FID and KID in the classifier's feature
space against the 10000 test images, the same definitions as examples/fashion_mnist/metric.cpp (FID: covariance /
(n-1), symmetric eigendecompositions; KID: the unbiased MMD^2 with k(x, y) = (gamma x.y + 1)^3, gamma = 1 / the
reference's mean squared norm), written independently with numpy. The .npy files hold the samples clipped to [-1, 1], so this is the FID of the
clipped images (the C++ program scores the raw sampler output). As a cross-check of the two implementations it
also scores the C++ noise floor's first draw (training images 0..n-1).

usage: score_npy.py DIR [--models models/fashion_mnist] [--data /usr/share/datasets/fashion-mnist]
"""
import argparse, gzip, json, os, sys
import numpy as np
import torch


def images(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n = int.from_bytes(raw[4:8], "big")
    return (np.frombuffer(raw, np.uint8, offset=16).reshape(n, 1, 28, 28).astype(np.float32) / np.float32(127.5)
            - np.float32(1.0))


def fit(f):
    mu = f.mean(0)
    c = f - mu
    return mu, c.T @ c / (len(f) - 1)


def sqrt_psd(a):
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.maximum(w, 0))) @ v.T


def fid(a, b):
    s1 = sqrt_psd(a[1])
    m = s1 @ b[1] @ s1
    w = np.linalg.eigvalsh(0.5 * (m + m.T))
    return float(((a[0] - b[0]) ** 2).sum() + np.trace(a[1]) + np.trace(b[1]) - 2 * np.sqrt(np.maximum(w, 0)).sum())


class KidReference:
    """KID's reference side: gamma = 1 / mean ||y_i||^2 and the mean kernel over distinct pairs of y."""

    def __init__(self, y):
        self.y = y
        self.gamma = 1.0 / float((y ** 2).sum(1).mean())
        self.within = self._within(y)

    def _within(self, a):
        total = 0.0
        for i in range(0, len(a), 1000):  # blocks: the 10000 x 10000 Gram matrix would be 800 MB
            total += float(((self.gamma * (a[i:i + 1000] @ a.T) + 1.0) ** 3).sum())
        diag = float(((self.gamma * (a ** 2).sum(1) + 1.0) ** 3).sum())
        return (total - diag) / (len(a) * (len(a) - 1))

    def kid(self, x):
        """Unbiased MMD^2 (Gretton et al. 2012, eq. 3) between x and the reference."""
        cross = float(((self.gamma * (x @ self.y.T) + 1.0) ** 3).mean())
        return self._within(x) + self.within - 2.0 * cross


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--models", default=os.path.join(here, "..", "..", "models", "fashion_mnist"))
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    args = ap.parse_args()
    torch.set_num_threads(1)
    clf = torch.jit.load(os.path.join(args.models, "classifier.pt")).eval()

    def feats(x):
        with torch.inference_mode():
            return np.concatenate([clf.features(torch.from_numpy(np.ascontiguousarray(x[i:i + 500]))).double().numpy()
                                   for i in range(0, len(x), 500)])

    test_features = feats(images(os.path.join(args.data, "t10k-images-idx3-ubyte.gz")))
    ref = fit(test_features)
    kid_ref = KidReference(test_features)
    res = json.load(open(os.path.join(args.dir, "results.json")))
    n = res["config"]["n"]
    train = images(os.path.join(args.data, "train-images-idx3-ubyte.gz"))
    floor_features = feats(train[:n])
    floor0 = fid(fit(floor_features), ref)
    print(f"cross-check: floor draw 0 (training images 0..{n - 1}): FID Python {floor0:.6f}, "
          f"C++ {res['noise_floor']['values'][0]:.6f}")
    if "kid_x1000" in res["noise_floor"]:
        print(f"             KID x 1000 Python {1e3 * kid_ref.kid(floor_features):.6f}, "
              f"C++ {res['noise_floor']['kid_x1000'][0]:.6f}")
    out = {}
    for c in res["cells"]:
        x = np.load(os.path.join(args.dir, c["file"])).reshape(-1, 1, 28, 28).astype(np.float32)
        f = feats(x)
        out[c["file"]] = {"fid_clipped": fid(fit(f), ref), "fid_raw_cpp": c["fid"],
                          "kid_x1000_clipped": 1e3 * kid_ref.kid(f), "kid_x1000_raw_cpp": c.get("kid_x1000"),
                          "n": len(x)}
    tags = [t for t in ["eta0", "eta0.2", "eta0.5", "eta1", "sigmahat"]
            if any(c["file"].endswith(f"_{t}.npy") for c in res["cells"])]
    for metric, width, cpp in (("fid", 5, "fid_raw_cpp"), ("kid_x1000", 6, "kid_x1000_raw_cpp")):
        for skip in ("uniform", "quadratic"):
            if not any(c["skip"] == skip for c in res["cells"]):
                continue
            print(f"\n{skip} skip: {metric.upper().replace('_X1000', ' x 1000')} of the clipped samples "
                  f"(C++ value for the raw samples in brackets)")
            print("     S" + "".join(f"{t:>19}" for t in tags))
            for s in sorted({c["steps"] for c in res["cells"]}):
                row = [out.get(f"{skip}_S{s}_{t}.npy") for t in tags]
                print(f"{s:6d}" + "".join(f"{r[metric + '_clipped']:10.1f} ({r[cpp] or float('nan'):{width}.1f})"
                                          for r in row))
    json.dump(out, open(os.path.join(args.dir, "scores_clipped.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
