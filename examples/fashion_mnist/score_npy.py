#!/usr/bin/python3
"""Scores the cells skipstep_fashion_mnist --dump-npy DIR wrote, in Python: FID in the classifier's feature space
against the 10000 test images, the same fit and formula as examples/fashion_mnist/metric.cpp (covariance / (n-1),
symmetric eigendecompositions). The .npy files hold the samples clipped to [-1, 1], so this is the FID of the
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

    ref = fit(feats(images(os.path.join(args.data, "t10k-images-idx3-ubyte.gz"))))
    res = json.load(open(os.path.join(args.dir, "results.json")))
    n = res["config"]["n"]
    train = images(os.path.join(args.data, "train-images-idx3-ubyte.gz"))
    floor0 = fid(fit(feats(train[:n])), ref)
    print(f"cross-check: floor draw 0 (training images 0..{n - 1}): Python {floor0:.6f}, "
          f"C++ {res['noise_floor']['values'][0]:.6f}")
    out = {}
    for c in res["cells"]:
        x = np.load(os.path.join(args.dir, c["file"])).reshape(-1, 1, 28, 28).astype(np.float32)
        out[c["file"]] = {"fid_clipped": fid(fit(feats(x)), ref), "fid_raw_cpp": c["fid"], "n": len(x)}
    tags = ["eta0", "eta0.2", "eta0.5", "eta1", "sigmahat"]
    for skip in ("uniform", "quadratic"):
        print(f"\n{skip} skip: FID of the clipped samples (C++ FID of the raw samples in brackets)")
        print("     S" + "".join(f"{t:>18}" for t in tags))
        for s in sorted({c["steps"] for c in res["cells"]}):
            row = [out.get(f"{skip}_S{s}_{t}.npy") for t in tags]
            print(f"{s:6d}" + "".join(f"{r['fid_clipped']:9.1f} ({r['fid_raw_cpp']:5.1f})" for r in row))
    json.dump(out, open(os.path.join(args.dir, "scores_clipped.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
