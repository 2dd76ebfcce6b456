"""faq-pipeline components: Transform and Trainer module code, custom components, serving."""

import os

# tf_keras (Keras 2) must back tf.keras before TensorFlow is first imported: TFT's Keras layer
# and the symbolic add_loss of the generation model do not work with Keras 3.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
