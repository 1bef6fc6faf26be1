"""Demo: L2H on synthetic logits with a planted two-level hierarchy (4 superclasses x 5 classes).

Runs on CPU in a few seconds and prints the learned tree. (Replaced by a training demo once the callback lands.)
"""

import torch

from l2h_lightning import l2h

torch.manual_seed(0)
K, per_super = 20, 5
names = [f"{s}{i}" for s in "ABCD" for i in range(per_super)]
target = torch.randint(K, (5000,))
same_super = (torch.arange(K)[:, None] // per_super) == (torch.arange(K)[None, :] // per_super)
logits = 6 * torch.eye(K)[target] + 3 * same_super[target].float() + 1.5 * torch.randn(5000, K)
tree = l2h(logits)
print(tree)
print("Newick:", tree.to_newick(names))
print("4 groups:", {g: [names[c] for c in range(K) if tree.cut(4)[c] == g] for g in range(4)})
