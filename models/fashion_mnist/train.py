#!/usr/bin/python3
"""Train skipstep's real-network fixtures on Debian's dataset-fashion-mnist (CPU, fixed seeds).

Produces, in --out (default: this directory):
  eps_unet.pt     TorchScript ε-network  forward(x: [B,1,28,28] float32 in [-1,1] scale, t: [B] timesteps) -> ε
                  (DDPM, T = 1000, linear betas 1e-4..0.02, EMA weights)
  classifier.pt   TorchScript classifier forward(x) -> logits [B,10], features(x) -> [B,128] penultimate
                  features (the quality metric's feature space: FID / KID)
  train_record.json  the command, epochs, wall times, losses and the classifier's test accuracy

By default the learning rate is constant (no schedule depends on the epoch count), so a run stopped after K epochs
with --max-minutes writes the same files as `--epochs K` (same seeds, same thread count). --lr-schedule cosine
decays it per iteration from --lr to --lr-min over --epochs (then a stopped run is not that of a shorter --epochs).

--init FILE starts the ε-network (and its EMA) from the weights of a TorchScript ε-network this script saved (a
warm start: fresh Adam moments, fresh generators), so a finished run can be trained further, e.g. with a decaying
learning rate; the record keeps FILE's sha256 and the record next to it.

--state FILE keeps the whole training state (weights, EMA, Adam's moments, the data/noise generator, the record) in
FILE after every epoch, and a run given an existing FILE continues from it: training can be spread over several
sessions (`--epochs` is then the total; with --lr-schedule cosine it must not change, since the schedule spans
it), and the result is that of one uninterrupted run (same thread count). The classifier is trained once, by the
run that creates FILE.
"""
import argparse, gzip, hashlib, json, math, os, shutil, sys, time
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA = "/usr/share/datasets/fashion-mnist"


def load_idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(split):
    prefix = "train" if split == "train" else "t10k"
    x = load_idx(f"{prefix}-images-idx3-ubyte.gz").astype(np.float32) / 127.5 - 1.0  # [-1, 1]
    y = load_idx(f"{prefix}-labels-idx1-ubyte.gz").astype(np.int64)
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)


# ---------------------------------------------------------------- the ε-network: a small U-Net
def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.to(torch.float32).unsqueeze(1) * freqs.unsqueeze(0)
    return torch.cat([torch.cos(args), torch.sin(args)], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, tdim: int):
        super().__init__()
        self.n1 = nn.GroupNorm(8, cin)
        self.c1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.t = nn.Linear(tdim, cout)
        self.n2 = nn.GroupNorm(8, cout)
        self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, temb):
        h = self.c1(F.silu(self.n1(x)))
        h = h + self.t(temb)[:, :, None, None]
        h = self.c2(F.silu(self.n2(h)))
        return h + self.skip(x)


class EpsUNet(nn.Module):
    """2×2 pixel-unshuffle stem (28×28×1 → 14×14×4), levels 14 and 7 with 32 / 64 channels, no attention."""

    def __init__(self, c1: int = 32, c2: int = 64, tdim: int = 128):
        super().__init__()
        self.tdim = tdim
        self.temb = nn.Sequential(nn.Linear(tdim, tdim), nn.SiLU(), nn.Linear(tdim, tdim))
        self.stem = nn.Conv2d(4, c1, 3, padding=1)
        self.d1a = ResBlock(c1, c1, tdim)
        self.d1b = ResBlock(c1, c1, tdim)
        self.down = nn.Conv2d(c1, c2, 3, stride=2, padding=1)
        self.d2a = ResBlock(c2, c2, tdim)
        self.d2b = ResBlock(c2, c2, tdim)
        self.mid = ResBlock(c2, c2, tdim)
        self.up = nn.Conv2d(c2, c1, 3, padding=1)
        self.u1a = ResBlock(2 * c1, c1, tdim)
        self.u1b = ResBlock(c1, c1, tdim)
        self.out_norm = nn.GroupNorm(8, c1)
        self.out = nn.Conv2d(c1, 4, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        temb = self.temb(timestep_embedding(t, self.tdim))
        h = self.stem(F.pixel_unshuffle(x, 2))
        h = self.d1a(h, temb)
        s1 = self.d1b(h, temb)
        h = self.down(s1)
        h = self.d2a(h, temb)
        h = self.d2b(h, temb)
        h = self.mid(h, temb)
        h = self.up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        h = self.u1a(torch.cat([h, s1], dim=1), temb)
        h = self.u1b(h, temb)
        return F.pixel_shuffle(self.out(F.silu(self.out_norm(h))), 2)


# ---------------------------------------------------------------- the metric's classifier
class Classifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU())
        self.head = nn.Linear(128, 10)

    @torch.jit.export
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.conv(x))


def train_classifier(xtr, ytr, xte, yte, epochs, log):
    torch.manual_seed(1)
    net = Classifier()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(2)
    for ep in range(epochs):
        perm = torch.randperm(len(xtr), generator=g)
        net.train()
        for i in range(0, len(xtr), 128):
            idx = perm[i:i + 128]
            loss = F.cross_entropy(net(xtr[idx]), ytr[idx])
            opt.zero_grad(); loss.backward(); opt.step()
        net.eval()
        with torch.no_grad():
            acc = sum((net(xte[i:i + 1000]).argmax(1) == yte[i:i + 1000]).sum().item()
                      for i in range(0, len(xte), 1000)) / len(xte)
        log(f"classifier epoch {ep + 1}/{epochs}: last loss {loss.item():.4f}, test accuracy {acc:.4f}")
    return net, acc


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=30, help="ε-network epochs (at most)")
    ap.add_argument("--max-minutes", type=float, default=0.0,
                    help="stop after the last epoch that fits in this wall time (0: no limit); the record says "
                         "how many epochs ran, and --epochs K reproduces the result")
    ap.add_argument("--classifier-epochs", type=int, default=3,
                    help="0: no classifier (a run that only trains the ε-network further, keeping classifier.pt)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--lr-schedule", choices=["constant", "cosine"], default="constant")
    ap.add_argument("--lr-min", type=float, default=0.0, help="cosine: the learning rate at the last iteration")
    ap.add_argument("--warmup-iters", type=int, default=0,
                    help="scale the learning rate linearly from 0 over this many first iterations")
    ap.add_argument("--loss-weight", choices=["uniform", "min-snr"], default="uniform",
                    help="per-timestep weight of the ε-MSE: uniform (Ho et al. 2020, L_simple), or min-snr: "
                         "min(SNR(t), gamma) / SNR(t) (Hang et al. 2023, 'Efficient Diffusion Training via "
                         "Min-SNR Weighting Strategy', eq. 7 for ε-prediction)")
    ap.add_argument("--min-snr-gamma", type=float, default=5.0)
    ap.add_argument("--init", default="", help="TorchScript ε-network (eps_unet.pt) to start from (warm start)")
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    ap.add_argument("--bench-iters", type=int, default=0, help="time this many training iterations and exit")
    ap.add_argument("--state", default="", help="training state file: resumed from if it exists, written every epoch")
    ap.add_argument("--iters-per-epoch", type=int, default=0,
                    help="stop each epoch after this many batches (0: the whole epoch; for testing --state)")
    ap.add_argument("--keep-every", type=int, default=0,
                    help="also keep the EMA network of every K-th epoch as eps_unet_epochK.pt (0: only the last)")
    ap.add_argument("--out", default=os.path.dirname(os.path.abspath(__file__)))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_start = time.time()

    def log(msg):
        print(f"[{time.time() - t_start:8.1f} s] {msg}", flush=True)

    xtr, ytr = load_split("train")
    xte, yte = load_split("test")
    T = 1000
    betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
    abar = torch.cumprod(1.0 - betas, 0)
    sqrt_ab = abar.sqrt().float()
    sqrt_1mab = (1.0 - abar).sqrt().float()

    torch.manual_seed(0)
    net = EpsUNet()
    ema = EpsUNet()
    ema.load_state_dict(net.state_dict())
    for p in ema.parameters():
        p.requires_grad_(False)
    nparams = sum(p.numel() for p in net.parameters())
    log(f"ε-network parameters: {nparams}, threads {torch.get_num_threads()}")
    init_info = None
    if args.init:
        if args.state:
            sys.exit("train.py: --init and --state together are not supported (a state file holds its own start)")
        weights = torch.jit.load(args.init).state_dict()
        net.load_state_dict(weights)
        ema.load_state_dict(weights)
        with open(args.init, "rb") as f:
            init_info = {"file": os.path.abspath(args.init), "sha256": hashlib.sha256(f.read()).hexdigest()}
        rec_path = os.path.join(os.path.dirname(os.path.abspath(args.init)), "train_record.json")
        if os.path.exists(rec_path):
            with open(rec_path) as f:
                init_info["record"] = json.load(f)
        log(f"ε-network and EMA start from {args.init} (sha256 {init_info['sha256'][:16]}…)")
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    g = torch.Generator().manual_seed(3)
    iters_per_epoch = math.ceil(len(xtr) / args.batch)
    if args.iters_per_epoch:
        iters_per_epoch = min(iters_per_epoch, args.iters_per_epoch)
    total_iters = max(1, args.epochs * iters_per_epoch)
    iteration = [0]

    def lr_at(k):
        """The learning rate of iteration k (0-based): constant, or cosine from --lr to --lr-min over --epochs,
        times a linear warm-up factor (k + 1) / --warmup-iters over the first --warmup-iters iterations."""
        warm = min(1.0, (k + 1) / args.warmup_iters) if args.warmup_iters else 1.0
        if args.lr_schedule == "constant":
            return warm * args.lr
        return warm * (args.lr_min + 0.5 * (args.lr - args.lr_min) * (1.0 + math.cos(math.pi * min(k, total_iters - 1)
                                                                                    / max(1, total_iters - 1))))

    snr = (abar / (1.0 - abar)).float()  # SNR(t) = ᾱ_t / (1 - ᾱ_t)
    min_snr_weight = torch.clamp(snr, max=args.min_snr_gamma) / snr  # used by --loss-weight min-snr only

    def train_iter(idx):
        x0 = xtr[idx]
        t = torch.randint(0, T, (len(idx),), generator=g)
        eps = torch.randn(x0.shape, generator=g)
        xt = sqrt_ab[t][:, None, None, None] * x0 + sqrt_1mab[t][:, None, None, None] * eps
        pred = net(xt, t)
        if args.loss_weight == "uniform":
            loss = F.mse_loss(pred, eps)  # kept as it was, so the committed run's command still reproduces it
            mse = loss
        else:
            per_sample = (pred - eps).pow(2).mean(dim=(1, 2, 3))
            loss = (min_snr_weight[t] * per_sample).mean()
            mse = per_sample.mean()
        for group in opt.param_groups:
            group["lr"] = lr_at(iteration[0])
        iteration[0] += 1
        opt.zero_grad(); loss.backward(); opt.step()
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.mul_(args.ema).add_(p, alpha=1.0 - args.ema)
        return mse.item()  # the unweighted ε-MSE, comparable across --loss-weight

    if args.bench_iters:
        perm = torch.randperm(len(xtr), generator=g)
        train_iter(perm[:args.batch])
        t0 = time.time()
        for k in range(args.bench_iters):
            train_iter(perm[(k + 1) * args.batch:(k + 2) * args.batch])
        dt = (time.time() - t0) / args.bench_iters
        print(f"threads {args.threads}: {dt:.3f} s/iter, {dt * math.ceil(len(xtr) / args.batch) / 60:.2f} min/epoch")
        return

    os.makedirs(args.out, exist_ok=True)
    record = {"command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
              "torch": torch.__version__, "threads": args.threads, "dataset": DATA,
              "eps_network": {"parameters": nparams, "T": T, "betas": "linear 1e-4..0.02", "ema": args.ema,
                              "batch": args.batch, "lr": args.lr, "warmup_iters": args.warmup_iters,
                              "loss_weight": args.loss_weight if args.loss_weight == "uniform" else
                              f"min-snr gamma {args.min_snr_gamma}",
                              "optimizer": "Adam, constant lr" if args.lr_schedule == "constant" else
                              f"Adam, cosine lr {args.lr} -> {args.lr_min} over {args.epochs} epochs",
                              "seeds": "torch.manual_seed(0) init, Generator(3) data/t/noise", "epochs": []},
              }
    if init_info:
        record["eps_network"]["init"] = init_info
        record["eps_network"]["seeds"] = f"weights from {os.path.basename(args.init)}, Generator(3) data/t/noise"

    def write_record():
        tmp = os.path.join(args.out, "train_record.json.tmp")
        with open(tmp, "w") as f:
            json.dump(record, f, indent=2)
        os.replace(tmp, os.path.join(args.out, "train_record.json"))

    first_epoch = 0
    if args.state and os.path.exists(args.state):
        st = torch.load(args.state)
        if st["threads"] != args.threads or st["batch"] != args.batch or st["lr"] != args.lr or st["ema"] != args.ema \
                or st.get("lr_schedule", "constant") != args.lr_schedule or st.get("lr_min", 0.0) != args.lr_min \
                or st.get("warmup_iters", 0) != args.warmup_iters \
                or st.get("loss_weight", "uniform") != args.loss_weight \
                or st.get("min_snr_gamma", 5.0) != args.min_snr_gamma \
                or (args.lr_schedule == "cosine" and st.get("epochs") != args.epochs):
            sys.exit(f"train.py: {args.state} was written with threads {st['threads']}, batch {st['batch']}, lr "
                     f"{st['lr']}, ema {st['ema']}, lr schedule {st.get('lr_schedule', 'constant')} (lr min "
                     f"{st.get('lr_min', 0.0)}, over {st.get('epochs')} epochs), warm-up "
                     f"{st.get('warmup_iters', 0)}, loss weight {st.get('loss_weight', 'uniform')} (gamma "
                     f"{st.get('min_snr_gamma', 5.0)}): resume with the same values (a cosine schedule spans "
                     f"--epochs, so it must match too)")
        net.load_state_dict(st["net"])
        ema.load_state_dict(st["ema_net"])
        opt.load_state_dict(st["opt"])
        g.set_state(st["generator"])
        record = st["record"]
        record["resumed"] = record.get("resumed", []) + [{"at_epoch": st["epoch"],
                                                          "command": " ".join(sys.argv[1:])}]
        first_epoch = st["epoch"]
        iteration[0] = first_epoch * iters_per_epoch  # every epoch runs exactly iters_per_epoch iterations
        log(f"resumed from {args.state} after epoch {first_epoch}")

    def save_state(epoch):
        tmp = args.state + ".tmp"
        torch.save({"epoch": epoch, "net": net.state_dict(), "ema_net": ema.state_dict(), "opt": opt.state_dict(),
                    "generator": g.get_state(), "record": record, "threads": args.threads, "batch": args.batch,
                    "lr": args.lr, "ema": args.ema, "lr_schedule": args.lr_schedule, "lr_min": args.lr_min,
                    "epochs": args.epochs, "warmup_iters": args.warmup_iters, "loss_weight": args.loss_weight,
                    "min_snr_gamma": args.min_snr_gamma}, tmp)
        os.replace(tmp, args.state)

    # The classifier first: it is cheap, and the table needs it whatever the ε-network's epoch count.
    tc = time.time()
    if first_epoch == 0 and args.classifier_epochs == 0:
        record["classifier"] = {"epochs": 0, "note": "not trained by this run (--classifier-epochs 0)"}
    elif first_epoch == 0:
        clf, acc = train_classifier(xtr, ytr, xte, yte, args.classifier_epochs, log)
        clf.eval()
        tmp = os.path.join(args.out, "classifier.pt.tmp")
        torch.jit.script(clf).save(tmp)
        os.replace(tmp, os.path.join(args.out, "classifier.pt"))
        record["classifier"] = {"epochs": args.classifier_epochs, "test_accuracy": acc, "wall_s": time.time() - tc,
                                "features": 128, "seeds": "torch.manual_seed(1) init, Generator(2) order"}
        write_record()

    te = time.time()
    eps_wall_before = record["eps_network"].get("wall_s", 0.0)
    total_wall_before = record.get("total_wall_s", 0.0)
    epoch_times = []
    for ep in range(first_epoch, args.epochs):
        if args.max_minutes and epoch_times and \
                (time.time() - t_start) + max(epoch_times) > args.max_minutes * 60:
            log(f"stopping before epoch {ep + 1}: the next epoch would pass --max-minutes {args.max_minutes}")
            break
        t0 = time.time()
        perm = torch.randperm(len(xtr), generator=g)
        net.train()
        total, n = 0.0, 0
        for i in range(0, len(xtr), args.batch):
            if args.iters_per_epoch and n == args.iters_per_epoch:
                break
            total += train_iter(perm[i:i + args.batch]); n += 1
        epoch_times.append(time.time() - t0)
        ema.eval()
        tmp = os.path.join(args.out, "eps_unet.pt.tmp")
        torch.jit.script(ema).save(tmp)
        os.replace(tmp, os.path.join(args.out, "eps_unet.pt"))
        if args.keep_every and (ep + 1) % args.keep_every == 0:
            shutil.copyfile(os.path.join(args.out, "eps_unet.pt"), os.path.join(args.out, f"eps_unet_epoch{ep + 1}.pt"))
        record["eps_network"]["epochs"].append({"epoch": ep + 1, "mean_loss": total / n, "wall_s": epoch_times[-1],
                                                "last_lr": lr_at(iteration[0] - 1)})
        record["eps_network"]["epochs_done"] = ep + 1
        record["eps_network"]["final_mean_loss"] = total / n
        record["eps_network"]["wall_s"] = eps_wall_before + time.time() - te  # summed over resumed runs
        record["total_wall_s"] = total_wall_before + time.time() - t_start
        write_record()
        if args.state:
            save_state(ep + 1)
        log(f"epoch {ep + 1}/{args.epochs}: mean loss {total / n:.5f}, {epoch_times[-1]:.1f} s")
    log("done")


if __name__ == "__main__":
    main()
